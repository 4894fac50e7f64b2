"""The evaluate stage with evaluate.generate=False and reference sets, end to
end on the micro config through the config view that refuses undeclared
reads: results.json holds the held-out split's loss by length and each
reference set's figures, nothing generated; a rerun is skipped, a changed
reference file reruns; preflight refuses a set without reference answers."""
import copy
import json
import os

import pytest
from absl import logging

from configs.lp_app import get_config
from lpjax import preflight
from lpjax.errors import DataError
from lpjax.stages import data, evaluate, target
from lpjax.validate import finalize, validate
from lpjax.workdir import Workdir

BINS = ["1-16", "17-64", "65-256", "257+"]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    logging.set_verbosity(logging.WARNING)
    tmp = tmp_path_factory.mktemp("reference_eval")
    write_jsonl(tmp / "sinstruct.jsonl", [
        {"id": f"q{i}", "instruction": f"copy: cat {i}",
         "instances": [{"input": "", **({"output": "cat " * (i * 7 + 1)} if i != 2 else {})}]} for i in range(6)])
    write_jsonl(tmp / "dolly.jsonl", [{"instruction": f"upper: dog {i}", "context": "", "response": "DOG"}
                                      for i in range(4)])
    cfg = get_config("micro")
    cfg.workdir = str(tmp / "w")
    cfg.target.train.epochs = 1
    cfg.pretrain.enabled, cfg.data.train_tokenizer = False, True
    e = cfg.evaluate
    e.generate, e.reference_limit = False, 4
    e.reference_sets = (f"sinstruct={tmp / 'sinstruct.jsonl'}",
                        f"dolly={tmp / 'dolly.jsonl'}#prompt=instruction,input=context,reference=response")
    validate(finalize(cfg))
    preflight.check(cfg)
    work = Workdir(cfg.workdir)
    d = work.run(data.STAGE, cfg)
    t = work.run(target.STAGE, cfg, {"data": d, "base": None}, {"subset": "x", "indices": list(range(48))},
                 name="target/x")
    ev = work.run(evaluate.STAGE, cfg, {"data": d, "base": None, "target": t}, {"subset": "x"}, name="evaluate/x")
    return cfg, work, d, t, ev, tmp


def test_results_without_generation(run):
    cfg, work, d, t, ev, tmp = run
    with open(os.path.join(ev.dir, "results.json")) as f:
        result = json.load(f)
    assert set(result) == {"num_examples", "loss", "mean_ppl", "by_length", "reference_sets"}
    assert [b["bin"] for b in result["by_length"]] == BINS
    assert sum(b["num"] for b in result["by_length"]) == result["num_examples"]
    refs = result["reference_sets"]
    assert list(refs) == ["sinstruct", "dolly"]
    # The first 4 items with a reference: q0, q1, q3, q4 (q2 has none).
    assert refs["sinstruct"]["num"] == 4 and refs["dolly"]["num"] == 4
    for figures in refs.values():
        assert figures["loss"] > 0 and figures["mean_ppl"] > 1 and figures["tokens"] > figures["num"]
        assert [b["bin"] for b in figures["by_length"]] == BINS
        assert sum(b["num"] for b in figures["by_length"]) == figures["num"]
    assert ev.summary == result  # nothing but the samples is left out, and there are none


def test_rerun_is_skipped_and_a_changed_reference_file_reruns(run):
    cfg, work, d, t, ev, tmp = run
    inputs = {"data": d, "base": None, "target": t}
    again = work.run(evaluate.STAGE, cfg, inputs, {"subset": "x"}, name="evaluate/x")
    assert again.key == ev.key
    path = tmp / "dolly.jsonl"
    saved = path.read_text()
    try:
        write_jsonl(path, [{"instruction": f"upper: dog {i}", "context": "", "response": "DOGS AND CATS"}
                           for i in range(4)])
        changed = work.run(evaluate.STAGE, cfg, inputs, {"subset": "x"}, name="evaluate/x")
        assert changed.key != ev.key
        assert changed.summary["reference_sets"]["dolly"]["tokens"] > ev.summary["reference_sets"]["dolly"]["tokens"]
        assert changed.summary["reference_sets"]["sinstruct"] == ev.summary["reference_sets"]["sinstruct"]
    finally:
        path.write_text(saved)


def test_preflight_refuses_a_set_without_references(run, tmp_path):
    cfg = copy.deepcopy(run[0])
    path = tmp_path / "vicuna.jsonl"
    write_jsonl(path, [{"question_id": i, "text": f"say {i}"} for i in range(3)])
    cfg.evaluate.reference_sets = (*cfg.evaluate.reference_sets, f"vicuna={path}")
    with pytest.raises(DataError, match="no reference answers") as e:
        preflight.check(cfg)
    assert e.value.path == str(path)
