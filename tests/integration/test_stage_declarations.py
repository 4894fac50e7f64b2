"""Every stage body reads only the config fields its declaration names.

The bodies run behind a view of the config that raises UndeclaredRead on
any other field (lpjax/workdir.py), so running the pipeline through every
branch of every stage is the check: a body that reads an undeclared field
fails here."""
import json
import os

import numpy as np
from absl import logging

from configs.lp_app import get_config
from lpjax import config, pipeline
from lpjax.config import get_path
from lpjax.scoring.store import ScoreStore
from lpjax.stages import answers, base, cluster, data, evaluate, judge, probe, report, select, target
from lpjax.validate import finalize, validate
from tests.integration.judge_server import ScriptedJudge


def test_declared_paths_exist_in_the_config():
    cfg = config.Config()
    for stage in (base.STAGE, data.STAGE, probe.STAGE, cluster.STAGE, select.STAGE, target.STAGE, evaluate.STAGE,
                  answers.STAGE, judge.STAGE, report.STAGE):
        for path in stage.reads + stage.runtime:
            get_path(cfg, path)  # AttributeError on a misspelt declaration


def run(cfg):
    validate(finalize(cfg))
    return pipeline.run(cfg)["stages"]


def test_every_stage_and_branch_runs_within_its_declaration(tmp_path):
    logging.set_verbosity(logging.WARNING)
    # Probe with the response-alone pass, clusters from a file, clust_rand,
    # targets, their evaluation, answers to a test set and a judge, the
    # report of all of it.
    cfg = get_config("micro")
    cfg.workdir = str(tmp_path / "a")
    cfg.select.metric = "ifd1"
    n = cfg.data.synthetic.num_train
    (tmp_path / "clusters.txt").write_text("\n".join(str(i % 5) for i in range(n)))
    cfg.cluster.method, cfg.cluster.file = "file", str(tmp_path / "clusters.txt")
    cfg.select.baselines = ("clust_rand",)
    cfg.target.train.epochs = 1
    (tmp_path / "set.jsonl").write_text("".join(json.dumps({"q": f"Say {w}.", "gold": w}) + "\n"
                                                for w in ("cat", "dog", "sun")))
    cfg.evaluate.answers.test_sets = (f"mine={tmp_path / 'set.jsonl'}#prompt=q,reference=gold",)
    cfg.evaluate.answers.max_new_tokens, cfg.evaluate.answers.max_len = 8, 128
    j = cfg.evaluate.judge
    with ScriptedJudge(lambda question, first, second, hit: ("reply", "7 5")) as server:
        j.backend, j.base_url, j.model, j.against = "openai", server.base_url, "scripted", ("clust_rand",)
        a = run(cfg)
    assert {"data", "probe", "cluster", "select", "target/ifd1", "evaluate/clust_rand", "answers/ifd1",
            "judge/ifd1-vs-clust_rand", "report", "base/llama-micro"} <= set(a)
    # "7 5" always prefers the answer shown first: a tie in every question (each order wins once).
    verdict = a["judge/ifd1-vs-clust_rand"].summary
    assert (verdict["win"], verdict["tie"], verdict["lose"]) == (0, 3, 0) and verdict["flip_rate"] == 1.0
    report_md = open(os.path.join(cfg.workdir, "report.md")).read()
    assert "## Pairwise judge" in report_md and "## Answers to the test sets" in report_md
    assert "## Cost next to quality" in report_md

    # Scores from files (this run's score directory) with a comparison,
    # MiniLM clusters, no target: the other branches of select and report.
    cfg = get_config("micro")
    cfg.workdir = str(tmp_path / "b")
    cfg.select.scores_from = "files"
    cfg.select.score_files = os.path.join(a["probe"].dir, "scores")
    cfg.select.compare = (os.path.join(a["probe"].dir, "scores"),)
    cfg.cluster.method, cfg.cluster.num_clusters = "minilm", 4
    cfg.data.train_tokenizer = False
    cfg.target.enabled = cfg.evaluate.enabled = False
    b = run(cfg)
    assert "probe" not in b and b["cluster"].summary["num_clusters"] == 4
    assert "Hardness transfer" in open(os.path.join(cfg.workdir, "report.md")).read()
    # The same records and scores as run a: LP_app of a's stored perplexities.
    metric = np.asarray(json.load(open(os.path.join(b["select"].dir, "metric.json")))["values"])
    ppl = ScoreStore.open(os.path.join(a["probe"].dir, "scores")).read("ppl").astype(np.float64)
    np.testing.assert_allclose(metric, (ppl[0] - ppl[1]) / ppl[0], rtol=1e-6)
