"""Every input format maps to the same record shape; bad files fail on one clear line."""
import json
import os

import pytest

from lpjax.data.formats import DataError, fingerprint, load_records, write_records

SHARED = "/work/shared/data"


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------- good files


def test_alpaca_json_list_missing_input_becomes_empty(tmp_path):
    path = _write(tmp_path, "a.json", """[
      {"instruction": "Add.", "input": "2, 3", "output": "5", "kind": "add"},
      {"instruction": "Say hi.", "output": "hi"}
    ]""")
    assert load_records(path) == [
        {"instruction": "Add.", "input": "2, 3", "output": "5", "kind": "add"},
        {"instruction": "Say hi.", "input": "", "output": "hi"},
    ]
    assert load_records(path, "alpaca") == load_records(path)


def test_jsonl_skips_blank_lines_and_null_input_is_empty(tmp_path):
    path = _write(
        tmp_path, "a.jsonl",
        '{"instruction": "A", "input": null, "output": "a"}\n\n   \n'
        '{"instruction": "B", "input": "x", "output": "b", "noisy": true}\n',
    )
    expected = [
        {"instruction": "A", "input": "", "output": "a"},
        {"instruction": "B", "input": "x", "output": "b", "noisy": True},
    ]
    assert load_records(path) == expected
    assert load_records(path, "jsonl") == expected


def test_json_file_holding_json_lines_is_read_as_jsonl(tmp_path):
    path = _write(tmp_path, "lines.json", '{"instruction": "A", "output": "a"}\n'
                                          '{"instruction": "B", "output": "b"}\n')
    assert [r["output"] for r in load_records(path)] == ["a", "b"]


def test_dolly_maps_context_and_response_and_keeps_category(tmp_path):
    path = _write(
        tmp_path, "dolly.jsonl",
        '{"instruction": "Who wrote it?", "context": "Tolkien wrote it.", '
        '"response": "Tolkien", "category": "closed_qa"}\n'
        '{"instruction": "Name a fruit.", "context": "", "response": "Apple", '
        '"category": "brainstorming"}\n',
    )
    expected = [
        {"instruction": "Who wrote it?", "input": "Tolkien wrote it.", "output": "Tolkien",
         "category": "closed_qa"},
        {"instruction": "Name a fruit.", "input": "", "output": "Apple",
         "category": "brainstorming"},
    ]
    assert load_records(path) == expected
    assert load_records(path, "dolly") == expected


def test_dolly_errors_name_the_source_field(tmp_path):
    path = _write(tmp_path, "dolly.jsonl",
                  '{"instruction": "a", "context": "", "response": "b"}\n'
                  '{"instruction": "a", "context": ""}\n')
    with pytest.raises(DataError) as err:
        load_records(path, "dolly")
    assert str(err.value) == f"{path}: record 2: field 'response' is missing"


def test_chat_last_assistant_is_output_and_earlier_turns_are_input(tmp_path):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris"},
    ]
    path = _write(tmp_path, "chat.jsonl", json.dumps({"messages": messages, "id": 7}) + "\n")
    (record,) = load_records(path)
    assert record == {
        "instruction": "Capital of France?",
        "input": "system: Be brief.\nuser: Hi\nassistant: Hello",
        "output": "Paris",
        "id": 7,
        "messages": messages[:4],
    }
    assert load_records(path, "chat") == [record]


def test_chat_single_turn_has_empty_input(tmp_path):
    messages = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    path = _write(tmp_path, "chat.jsonl", json.dumps({"messages": messages}))
    assert load_records(path) == [
        {"instruction": "Q", "input": "", "output": "A", "messages": messages[:1]}
    ]


def test_chat_without_assistant_turn_is_an_error(tmp_path):
    path = _write(tmp_path, "chat.jsonl",
                  json.dumps({"messages": [{"role": "user", "content": "Q"}]}))
    with pytest.raises(DataError, match=r"chat\.jsonl: record 1: .*no assistant turn"):
        load_records(path)


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = str(tmp_path / "d.parquet")
    table = pa.table({"instruction": ["A", "B"], "input": ["x", None], "output": ["a", "b"],
                      "difficulty": [1, 3]})
    pq.write_table(table, path)
    expected = [
        {"instruction": "A", "input": "x", "output": "a", "difficulty": 1},
        {"instruction": "B", "input": "", "output": "b", "difficulty": 3},
    ]
    assert load_records(path) == expected
    assert load_records(path, "parquet") == expected


def test_hf_save_to_disk_directory(tmp_path):
    import datasets

    path = str(tmp_path / "ds")
    datasets.Dataset.from_dict(
        {"instruction": ["A"], "input": [""], "output": ["a"], "category": ["c"]}
    ).save_to_disk(path)
    expected = [{"instruction": "A", "input": "", "output": "a", "category": "c"}]
    assert load_records(path) == expected
    assert load_records(path, "hf_disk") == expected


# ---------------------------------------------------------------- bad files


def _error(path, format="auto"):
    with pytest.raises(DataError) as err:
        load_records(path, format)
    text = str(err.value)
    assert "\n" not in text and os.path.basename(path) in text
    return text


def test_missing_field_names_file_and_record(tmp_path):
    path = _write(tmp_path, "data.json", json.dumps([
        {"instruction": "a", "input": "", "output": "b"},
        {"instruction": "a", "input": "", "output": "b"},
        {"instruction": "a", "input": ""},
    ]))
    assert _error(path) == f"{path}: record 3: field 'output' is missing"


def test_non_string_field(tmp_path):
    path = _write(tmp_path, "data.json", json.dumps(
        [{"instruction": "a", "input": "", "output": "b"}] * 4
        + [{"instruction": "a", "input": 5, "output": "b"}]
    ))
    assert _error(path) == f"{path}: record 5: field 'input' must be a string, got int"


def test_null_instruction_is_not_allowed(tmp_path):
    path = _write(tmp_path, "data.jsonl", '{"instruction": null, "output": "b"}\n')
    assert _error(path) == f"{path}: record 1: field 'instruction' must be a string, got null"


def test_record_that_is_not_an_object(tmp_path):
    path = _write(tmp_path, "data.json", '[{"instruction": "a", "output": "b"}, ["a", "b"]]')
    assert _error(path) == f"{path}: record 2: expected an object, got list"


def test_invalid_json_list_names_line_column_and_record(tmp_path):
    # Record 2 lacks a value after "output": line 3, column 32 is the closing brace.
    path = _write(tmp_path, "data.json", '[\n{"instruction": "a", "output": "b"},\n'
                                         '{"instruction": "a", "output": }\n]')
    text = _error(path)
    assert text.startswith(f"{path}: record 2: invalid JSON at line 3 column 32: ")


def test_invalid_json_line_names_line_and_record(tmp_path):
    # The ':' after "output" is missing: column 31 holds the '"' of "b".
    path = _write(tmp_path, "data.jsonl", '{"instruction": "a", "output": "b"}\n\n'
                                          '{"instruction": "a", "output" "b"}\n')
    text = _error(path)
    assert text.startswith(f"{path}: record 2: invalid JSON at line 3 column 31: ")


@pytest.mark.parametrize("text", ["", "  \n\n", "[]"])
def test_empty_file(tmp_path, text):
    path = _write(tmp_path, "data.json", text)
    assert _error(path) == f"{path}: file is empty (no records)"


def test_json_that_is_not_a_list(tmp_path):
    path = _write(tmp_path, "data.json", '{"a": 1}')
    # A lone object is read as one JSON line: it is a record without the fields.
    assert _error(path) == f"{path}: record 1: field 'instruction' is missing"
    assert _error(path, "alpaca") == f"{path}: expected a JSON list of records, got dict"


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="unknown data format"):
        load_records(_write(tmp_path, "a.json", "[]"), "csv")
    with pytest.raises(DataError, match="nope.json: no such file"):
        load_records(str(tmp_path / "nope.json"))


# ---------------------------------------------------------------- fingerprint, write


def test_fingerprint_ignores_metadata_and_matches_hand_computed_hash():
    import hashlib

    records = [{"output": "é", "instruction": "i", "input": "", "kind": "copy"}]
    canonical = '[{"input":"","instruction":"i","output":"é"}]'
    assert fingerprint(records) == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert fingerprint([{"instruction": "i", "input": "", "output": "é"}]) == fingerprint(records)
    assert fingerprint([{"instruction": "i", "input": "", "output": "e"}]) != fingerprint(records)


def test_write_records_json_and_jsonl(tmp_path):
    records = [{"instruction": "é", "input": "", "output": "1", "noisy": False}]
    write_records(records, str(tmp_path / "out.jsonl"))
    assert (tmp_path / "out.jsonl").read_text(encoding="utf-8") == (
        '{"instruction": "é", "input": "", "output": "1", "noisy": false}\n'
    )
    write_records(records, str(tmp_path / "sub" / "out.json"))
    assert json.loads((tmp_path / "sub" / "out.json").read_text(encoding="utf-8")) == records
    # Nothing but the outputs is left behind: the temp files were renamed away.
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["out.json", "out.jsonl"]
    with pytest.raises(ValueError):
        write_records(records, str(tmp_path / "out.csv"))


# ---------------------------------------------------------------- shared files


def _shared(name):
    path = os.path.join(SHARED, name)
    if not os.path.exists(path):
        pytest.skip(f"{path} is not available on this machine")
    return path


def test_shared_alpaca_52k():
    records = load_records(_shared("alpaca_52k.json"))
    assert len(records) == 52002
    assert records[0] == {
        "instruction": "Give three tips for staying healthy.",
        "input": "",
        "output": "1.Eat a balanced diet and make sure to include plenty of fruits and "
                  "vegetables. \n2. Exercise regularly to keep your body active and strong. "
                  "\n3. Get enough sleep and maintain a consistent sleep schedule.",
    }


def test_shared_dolly_is_an_already_mapped_json_list():
    path = _shared("dolly_14989.json")
    with open(path, encoding="utf-8") as f:
        assert f.read(1) == "["  # a JSON list, not Dolly's raw JSON lines
    records = load_records(path)
    assert len(records) == 14989
    assert all(set(r) == {"instruction", "input", "output"} for r in records)
    assert records[0]["instruction"].startswith("Given the text, write a summary of the effects")
