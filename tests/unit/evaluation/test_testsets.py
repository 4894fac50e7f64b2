"""Test sets load into one record shape, bad records stop with one line
naming file and record, and the shipped sets in ../shared load whole."""
import json
import os

import pytest

from lpjax.data.formats import DataError
from lpjax.evaluation.testsets import KNOWN, TestItem, known_specs, load_test_set, load_test_sets, parse_spec
from tests.conftest import SHARED


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def test_each_known_set_in_its_own_shape(tmp_path):
    files = {
        "vicuna": [{"question_id": 1, "text": "How?", "category": "generic"}],
        "koala": [{"id": "koala_0", "prompt": "List films."}],
        "wizardlm": [{"idx": 7, "Skill": "Math", "Instruction": "2+2?"}],
        "sinstruct": [{"id": "t0", "instruction": "Fix it.", "instances": [{"input": "teh cat", "output": "the cat"}]},
                      {"id": "t1", "instruction": "Say hi.", "instances": [{"input": "", "output": "hi"}]}],
        # LIMA's field is a plain string in this copy, a list of turns in its HF release.
        "lima": [{"conversations": "Write a poem."}, {"conversations": ["Tell a joke.", "(an answer)"]}],
    }
    specs = [f"{name}={write(tmp_path / f'{name}.jsonl', rows)}" for name, rows in files.items()]
    items = load_test_sets(specs)
    assert items == [
        TestItem("1", "How?", "", None, "vicuna"),
        TestItem("koala_0", "List films.", "", None, "koala"),
        TestItem("7", "2+2?", "", None, "wizardlm"),
        TestItem("t0", "Fix it.", "teh cat", "the cat", "sinstruct"),
        TestItem("t1", "Say hi.", "", "hi", "sinstruct"),
        TestItem("1", "Write a poem.", "", None, "lima"),
        TestItem("2", "Tell a joke.", "", None, "lima"),
    ]
    assert items[3].question() == "Fix it.\n\nteh cat" and items[0].question() == "How?"
    assert items[3].record() == {"instruction": "Fix it.", "input": "teh cat"}


def test_any_jsonl_with_configured_fields(tmp_path):
    path = write(tmp_path / "mine.jsonl", [{"q": {"text": "Add."}, "ctx": ["1 2"], "gold": "3", "key": 9},
                                          {"q": {"text": "Sub."}, "gold": "0", "key": 10}])
    items = load_test_set(f"mine={path}#prompt=q.text, input=ctx[0], reference=gold, id=key")
    assert items == [TestItem("9", "Add.", "1 2", "3", "mine"), TestItem("10", "Sub.", "", "0", "mine")]
    # A known set's fields can be overridden one at a time.
    assert parse_spec(f"vicuna={path}#prompt=q.text").fields == KNOWN["vicuna"].__class__("q.text", id="question_id")


@pytest.mark.parametrize("rows,record,needle", [
    ([{"text": "a"}, {"txt": "b"}], 2, "field 'text' is missing"),
    ([{"text": "a"}, {"text": 5}], 2, "must be a string, got int"),
    ([{"text": "  "}], 1, "is empty"),
    ([{"text": "a"}, ["text"]], 2, "expected an object"),
    (['{"text": "a"}', '{"text": '], 2, "invalid JSON"),
    ([{"text": "a", "question_id": 3}, {"text": "b", "question_id": 3}], 2, "id '3' repeats record 1"),
])
def test_bad_records_name_file_and_record(tmp_path, rows, record, needle):
    path = write(tmp_path / "vicuna.jsonl", rows)
    with pytest.raises(DataError) as e:
        load_test_set(f"vicuna={path}")
    assert e.value.path == path and e.value.record == record and needle in str(e.value)
    assert "\n" not in str(e.value) and str(e.value).startswith(f"{path}: record {record}: ")


def test_sinstruct_input_of_the_wrong_type_is_refused(tmp_path):
    path = write(tmp_path / "s.jsonl", [{"id": "a", "instruction": "x", "instances": [{"input": 3, "output": "y"}]}])
    with pytest.raises(DataError, match="record 1: input field 'instances\\[0\\].input' must be a string"):
        load_test_set(f"sinstruct={path}")


@pytest.mark.parametrize("spec,needle", [
    ("vicuna", "expected name=path"),
    ("mine=/x.jsonl", "not a known set"),
    ("mine=/x.jsonl#prompt=a..b", "not a field path"),
    ("mine=/x.jsonl#question=a", "is not one of"),
])
def test_bad_specs(spec, needle):
    with pytest.raises(ValueError, match=needle):
        parse_spec(spec)


COUNTS = {"vicuna": 80, "koala": 180, "wizardlm": 218, "sinstruct": 252, "lima": 300}


def test_the_literatures_five_sets_load_whole():
    directory = os.path.join(SHARED, "data", "eval")
    if not os.path.isdir(directory):
        pytest.skip(f"the evaluation sets are not available at {directory}")
    items = load_test_sets(known_specs(directory))
    assert {name: sum(i.set == name for i in items) for name in COUNTS} == COUNTS
    sinstruct = [i for i in items if i.set == "sinstruct"]
    assert all(i.reference is not None for i in sinstruct)
    assert all(i.reference is None for i in items if i.set != "sinstruct")
    # 44 of Self-Instruct's 252 instances have an empty input.
    assert sum(not i.input for i in sinstruct) == 44
    assert sinstruct[0].id == "user_oriented_task_0" and sinstruct[0].input.startswith("If you have any questions")
    assert [i.id for i in items if i.set == "vicuna"][:3] == ["1", "2", "3"]
    assert next(i for i in items if i.set == "lima").instruction.startswith("I'm writing a NeurIPS paper")
