"""export_subset (JSON, JSONL, datasets on disk)."""

import json
import os

import datasets
import pytest

from lpjax.data.formats import FIELDS, load_records
from lpjax.selection.export import export_subset

RECORDS = [
    {"instruction": "Add.", "input": "1 2", "output": "3", "kind": "add"},
    {"instruction": "Add.", "input": "1 2", "output": "3", "kind": "sum"},  # duplicate (metadata differs)
    {"instruction": "Say nothing.", "input": "", "output": "  \n\t"},  # empty response
    {"instruction": "Add.", "input": "1 2", "output": "3 "},  # not a duplicate: output differs
    {"instruction": "Name a color.", "input": "", "output": "Blue é ✓", "kind": "open", "noisy": True},
    {"instruction": "Say nothing.", "input": "", "output": "  \n\t"},  # duplicate of 2, also empty
    {"instruction": "Add.", "input": "1 2", "output": "3", "kind": "add"},  # third copy
]


def test_export_all_formats_round_trip(tmp_path):
    paths = export_subset(RECORDS, [4, 0, 2], tmp_path / "out", "subset_lp1")
    assert paths == {f: str(tmp_path / "out" / f"subset_lp1.{f}") for f in ["json", "jsonl", "hf"]}
    expected = [RECORDS[4], RECORDS[0], RECORDS[2]]
    assert json.loads(open(paths["json"]).read()) == expected
    assert [json.loads(line) for line in open(paths["jsonl"])] == expected
    ds = datasets.load_from_disk(paths["hf"])
    assert ds.column_names == ["instruction", "input", "output", "kind", "noisy"]
    assert ds.to_list() == [{**{"kind": None, "noisy": None}, **r} for r in expected]
    # The project's own loaders read all three back.
    for fmt in ["json", "jsonl", "hf"]:
        assert [{k: r[k] for k in FIELDS} for r in load_records(paths[fmt])] == [
            {k: r[k] for k in FIELDS} for r in expected]
    assert sorted(os.listdir(tmp_path / "out")) == ["subset_lp1.hf", "subset_lp1.json", "subset_lp1.jsonl"]


def test_export_core_fields_only_and_replace(tmp_path):
    export_subset(RECORDS, [0, 1], tmp_path, "s", formats=["json", "hf"])
    paths = export_subset(RECORDS, [4], tmp_path, "s", formats=["json", "hf"], fields=FIELDS)
    assert json.loads(open(paths["json"]).read()) == [{"instruction": "Name a color.", "input": "",
                                                       "output": "Blue é ✓"}]
    ds = datasets.load_from_disk(paths["hf"])
    assert ds.column_names == list(FIELDS) and len(ds) == 1
    assert sorted(os.listdir(tmp_path)) == ["s.hf", "s.json"]  # replaced in place, no temporaries left


def test_export_empty_selection(tmp_path):
    paths = export_subset(RECORDS, [], tmp_path, "none", fields=FIELDS)
    assert json.loads(open(paths["json"]).read()) == []
    ds = datasets.load_from_disk(paths["hf"])
    assert len(ds) == 0 and ds.column_names == list(FIELDS)


@pytest.mark.parametrize("indices, match", [([0, 7], "out of range"), ([1, 1], "repeat"), ([-1], "out of range"),
                                            ([0.5], "integers")])
def test_export_rejects_bad_indices(tmp_path, indices, match):
    with pytest.raises(ValueError, match=match):
        export_subset(RECORDS, indices, tmp_path, "x")
    assert not os.listdir(tmp_path)


def test_export_rejects_unknown_format_and_missing_field(tmp_path):
    with pytest.raises(ValueError, match="formats"):
        export_subset(RECORDS, [0], tmp_path, "x", formats=["csv"])
    with pytest.raises(ValueError, match="no field 'kind'"):
        export_subset(RECORDS, [2], tmp_path, "x", fields=["instruction", "kind"])


def test_export_mixed_metadata_types_fail_clearly(tmp_path):
    records = [{"instruction": "a", "input": "", "output": "b", "level": 1},
               {"instruction": "c", "input": "", "output": "d", "level": "hard"}]
    with pytest.raises(ValueError, match="fields=FIELDS"):
        export_subset(records, [0, 1], tmp_path, "mixed", formats=["hf"])
    assert not os.listdir(tmp_path)
    export_subset(records, [0, 1], tmp_path, "mixed", formats=["hf"], fields=FIELDS)
