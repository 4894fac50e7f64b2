"""cluster.method=field: one cluster per value of a record field, ids in
sorted order of the values; a record without the field stops the run at the
preflight check, naming the file, the field and the record."""
import json
import os

import numpy as np
import pytest

from lpjax import preflight
from lpjax.config import ClusterConfig, Config
from lpjax.data import split
from lpjax.errors import DataError, UserError
from lpjax.selection.clusters import assign, field_clusters, field_values
from lpjax.stages import cluster as cluster_stage
from lpjax.validate import finalize, validate
from lpjax.workdir import ConfigView, StageContext, StageResult


def _records(values, field="category"):
    return [{"instruction": f"q{i}", "input": "", "output": f"a{i}", field: v} for i, v in enumerate(values)]


def test_ids_follow_the_sorted_values():
    records = _records(["open_qa", "brainstorming", "open_qa", "summarization", "brainstorming"])
    ids = field_clusters(records, "category", "dolly.jsonl")
    assert ids.dtype == np.int64
    assert ids.tolist() == [1, 0, 1, 2, 0]
    assert field_values(records, "category") == ["brainstorming", "open_qa", "summarization"]
    # The ids do not depend on record order: a value keeps its id.
    assert field_clusters(records[::-1], "category", "x").tolist() == ids[::-1].tolist()


def test_values_are_sorted_as_strings():
    # str(value) orders them: "10" < "2" < "3", and 2 and "2" are one cluster.
    records = _records([3, 10, 2, "2", True])
    assert field_values(records, "category") == ["10", "2", "3", "True"]
    assert field_clusters(records, "category", "x").tolist() == [2, 0, 1, 1, 3]
    assert field_clusters(_records(["only"] * 4), "category", "x").tolist() == [0, 0, 0, 0]
    assert field_clusters([], "category", "x").shape == (0,)


@pytest.mark.parametrize("bad,what", [({}, "no 'category' field"), ({"category": None}, "'category' field is null")])
def test_a_record_without_the_field_is_named(bad, what):
    records = _records(["a", "b", "c"])
    records[1] = {k: v for k, v in records[1].items() if k != "category"} | bad
    with pytest.raises(DataError) as e:
        field_clusters(records, "category", "data.json")
    assert e.value.path == "data.json" and e.value.record == 2
    assert str(e.value).startswith("data.json: record 2: ") and what in str(e.value)
    assert "\n" not in str(e.value)
    # With the data split's source index, the record is numbered as in the file.
    with pytest.raises(DataError) as e:
        field_clusters(records, "category", "data.json", index=[0, 4, 7])
    assert e.value.record == 5


def test_assign_handles_field():
    records = _records(["b", "a", "b"], field="kind")
    c = ClusterConfig(method="field", field="kind")
    assert assign(records, c, seed=0).tolist() == [1, 0, 1]
    with pytest.raises(ValueError):
        assign(records, ClusterConfig(method="none"), seed=0)


def test_cluster_stage_summary_names_the_values(tmp_path):
    data_dir, out = tmp_path / "data", tmp_path / "cluster"
    data_dir.mkdir(), out.mkdir()
    records = _records(["open_qa", "brainstorming", "open_qa"])
    (data_dir / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (data_dir / "source_index.json").write_text(json.dumps([0, 2, 3]))
    cfg = Config()
    cfg.cluster.method, cfg.cluster.field = "field", "category"
    stage = cluster_stage.STAGE
    view = ConfigView(cfg, frozenset(stage.reads + stage.runtime), "cluster")
    ctx = StageContext(view, str(out), {"data": StageResult("data", "k", str(data_dir), {})}, {}, lambda m: None)
    summary = stage.run(ctx)
    assert summary == {"num_clusters": 2, "method": "field", "field": "category",
                       "values": ["brainstorming", "open_qa"]}
    assert json.loads((out / "assignments.json").read_text()) == [1, 0, 1]


def _cfg(tmp_path, records, field="category"):
    """A selection-only style config (no model trained) on a small JSON file."""
    path = tmp_path / "data.json"
    path.write_text(json.dumps(records))
    cfg = Config(workdir=str(tmp_path / "run"))
    cfg.data.source = str(path)
    cfg.data.test_size = 2
    cfg.data.train_tokenizer = True
    cfg.pretrain.enabled = False
    cfg.probe.model = "llama-micro"
    cfg.target.enabled = cfg.evaluate.enabled = False
    cfg.cluster.method, cfg.cluster.field = "field", field
    finalize(cfg)
    validate(cfg)
    return cfg


def test_preflight_refuses_a_record_without_the_field(tmp_path):
    records = _records(["open_qa", "brainstorming"] * 6)
    cfg = _cfg(tmp_path, records)
    # The held-out draw depends only on the record count and the seed: take
    # the field from a training record whose number in the file differs
    # from its number among the training records.
    _, _, index = split.load_splits(cfg.data, cfg.seed)
    missing = next(i for k, i in enumerate(index) if i != k)
    del records[missing]["category"]
    (tmp_path / "data.json").write_text(json.dumps(records))
    with pytest.raises(UserError) as e:
        preflight.check(cfg)
    assert isinstance(e.value, DataError)
    assert e.value.where == cfg.data.source and e.value.record == missing + 1  # numbered as in the file
    assert str(e.value).startswith(f"{cfg.data.source}: record {missing + 1}: no 'category' field")
    assert "\n" not in str(e.value)
    assert not os.path.exists(cfg.workdir)


def test_preflight_passes_when_every_training_record_has_the_field(tmp_path):
    cfg = _cfg(tmp_path, _records(["open_qa", "brainstorming"] * 6))
    preflight.check(cfg)
    cfg.cluster.field = "kind"
    with pytest.raises(DataError, match="no 'kind' field"):
        preflight.check(cfg)
