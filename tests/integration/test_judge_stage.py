"""The answers and judge stages end to end on the micro config, through
the config view that refuses undeclared reads: two targets answer two test
sets, a judge on 127.0.0.1 compares them (verdicts checked by hand from the
answer files), a rerun with another bootstrap count sends nothing, and a
local lpjax checkpoint judges through the same cache."""
import json
import os

import pytest
from absl import logging

from configs.lp_app import get_config
from lpjax import config
from lpjax.config import get_path
from lpjax.stages import answers, data, judge, target
from lpjax.validate import finalize, validate
from lpjax.workdir import Workdir
from tests.integration.judge_server import ScriptedJudge


def score(text):
    return 1 + len(text) % 10


def by_length(question, first, second, hit):
    """Scores that depend only on each answer's text, whatever its position."""
    return ("reply", f"{score(first)} {score(second)}\nscored by length")


def test_declared_paths_exist_in_the_config():
    for stage in (answers.STAGE, judge.STAGE):
        for path in stage.reads + stage.runtime:
            get_path(config.Config(), path)


def read_jsonl(path):
    return [json.loads(line) for line in open(path)]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    logging.set_verbosity(logging.WARNING)
    tmp = tmp_path_factory.mktemp("judge_stage")
    (tmp / "vicuna.jsonl").write_text("".join(json.dumps({"question_id": i, "text": f"copy: cat {i}"}) + "\n"
                                              for i in range(6)))
    (tmp / "mine.jsonl").write_text("".join(json.dumps({"q": f"upper: dog {i}", "in": "x" * i, "gold": "DOG"}) + "\n"
                                            for i in range(4)))
    cfg = get_config("micro")
    cfg.workdir = str(tmp / "w")
    cfg.target.train.epochs = 1
    # Randomly initialized targets with the data's BPE: what is judged here is the plumbing.
    cfg.pretrain.enabled, cfg.data.train_tokenizer = False, True
    a = cfg.evaluate.answers
    a.test_sets = (f"vicuna={tmp / 'vicuna.jsonl'}", f"mine={tmp / 'mine.jsonl'}#prompt=q,input=in,reference=gold")
    a.max_new_tokens, a.max_len, a.batch_size = 12, 96, 8
    work = Workdir(cfg.workdir)
    d = work.run(data.STAGE, cfg)
    found = {}
    for name, indices in (("lp_app", list(range(0, 48))), ("random", list(range(48, 96)))):
        t = work.run(target.STAGE, cfg, {"data": d, "base": None}, {"subset": name, "indices": indices},
                     name=f"target/{name}")
        found[name] = work.run(answers.STAGE, cfg, {"data": d, "base": None, "target": t}, {"subset": name},
                               name=f"answers/{name}")
        found[f"target/{name}"] = t
    return cfg, work, found


def judged(cfg, work, found):
    validate(finalize(cfg))
    return work.run(judge.STAGE, cfg, {"answers_a": found["lp_app"], "answers_b": found["random"]},
                    {"a": "lp_app", "b": "random"}, name="judge/lp_app-vs-random")


def test_answers_stage(run):
    cfg, work, found = run
    rows = read_jsonl(os.path.join(found["lp_app"].dir, "answers.jsonl"))
    assert [(r["set"], r["id"]) for r in rows] == [("vicuna", str(i)) for i in range(6)] + [
        ("mine", str(i)) for i in range(1, 5)]
    assert all(0 <= r["answer_tokens"] <= 12 for r in rows)
    s = found["lp_app"].summary
    assert s["num_answers"] == 10 and set(s["sets"]) == {"vicuna", "mine"}
    assert "reference" not in s["sets"]["vicuna"]
    ref = s["sets"]["mine"]["reference"]
    assert ref["num"] == 4 and ref["loglik_per_token"] < 0 and ref["tokens"] > 4
    metrics = json.load(open(os.path.join(found["lp_app"].dir, "metrics.json")))
    assert metrics == s["sets"]


def test_judge_stage_against_an_http_judge(run):
    cfg, work, found = run
    j = cfg.evaluate.judge
    with ScriptedJudge(by_length) as server:
        j.backend, j.base_url, j.model, j.bootstrap, j.timeout, j.max_retries = "openai", server.base_url, "m", 200, 10, 1
        first = judged(cfg, work, found)
        assert sum(server.received.values()) == 20
        j.bootstrap = 300  # a new stage key, the same requests: all from the cache
        second = judged(cfg, work, found)
        assert sum(server.received.values()) == 20
    assert first.key != second.key and second.summary["requests"] == {"total": 20, "sent": 0, "cached": 20}
    # By hand, from the two answer files: the judge scores each answer by its length alone.
    a = read_jsonl(os.path.join(found["lp_app"].dir, "answers.jsonl"))
    b = {(r["set"], r["id"]): r for r in read_jsonl(os.path.join(found["random"].dir, "answers.jsonl"))}
    diff = [score(r["answer"]) - score(b[(r["set"], r["id"])]["answer"]) for r in a]
    win, tie, lose = sum(d > 0 for d in diff), sum(d == 0 for d in diff), sum(d < 0 for d in diff)
    s = first.summary
    assert (s["win"], s["tie"], s["lose"], s["unparsed"]) == (win, tie, lose, 0)
    assert s["winning_score"] == pytest.approx((win - lose) / 10 + 1) and s["flip_rate"] == 0
    assert s["a"] == "lp_app" and s["b"] == "random" and s["judge"]["identity"] == "openai:m"
    mine = s["per_set"]["mine"]
    assert mine["win"] + mine["tie"] + mine["lose"] == 4
    results = json.load(open(os.path.join(first.dir, "results.json")))
    assert results["win"] == win and "verdicts" not in results
    assert len(read_jsonl(os.path.join(first.dir, "verdicts.jsonl"))) == 10
    assert open(os.path.join(first.dir, "unparsed.jsonl")).read() == ""


def test_judge_stage_with_a_local_checkpoint_as_judge(run):
    cfg, work, found = run
    j = cfg.evaluate.judge
    j.backend, j.model, j.max_tokens, j.bootstrap = "lpjax", os.path.join(found["target/random"].dir, "hf"), 4, 100
    first = judged(cfg, work, found)
    s = first.summary
    # A micro model cannot follow the protocol; its replies are listed, never scored.
    assert s["win"] + s["tie"] + s["lose"] + s["unparsed"] == 10
    assert s["requests"] == {"total": 20, "sent": 20, "cached": 0} and s["tokens"]["completion_tokens"] <= 80
    assert s["judge"]["identity"].startswith("lpjax:")
    unparsed = read_jsonl(os.path.join(first.dir, "unparsed.jsonl"))
    assert len({(u["set"], u["id"]) for u in unparsed}) == s["unparsed"]
    j.bootstrap = 50
    assert judged(cfg, work, found).summary["requests"]["sent"] == 0
