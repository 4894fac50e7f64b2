"""The select stage alone through the launcher, on the authors' released
perplexities for Alpaca: per-cluster selection and the transfer analysis."""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO, SHARED, launch_env

REF = os.path.join(SHARED, "reference", "small2large")
ALPACA = os.path.join(SHARED, "data", "alpaca_52k.json")

pytestmark = pytest.mark.skipif(not (os.path.isdir(REF) and os.path.isfile(ALPACA)),
                                reason=f"needs {REF} and {ALPACA}")


def reference_lp_app(model_dir):
    with open(os.path.join(REF, model_dir, "epoch-pre.pkl"), "rb") as f:
        p0 = np.array(pickle.load(f), np.float64)
    with open(os.path.join(REF, model_dir, "epoch-1.pkl"), "rb") as f:
        p1 = np.array(pickle.load(f), np.float64)
    return (p0 - p1) / p0


def official_rule(metric, clusters, percent):
    """The authors' per-cluster chunk rule, written out plainly."""
    k = round(100 / percent)
    chosen = []
    for c in np.unique(clusters):
        members = np.where(clusters == c)[0]
        order = members[np.argsort(metric[members], kind="stable")]
        chosen.extend(np.array_split(order, k)[0].tolist())
    return sorted(chosen)


def test_select_stage_alone_on_released_scores(tmp_path):
    n = 52002
    clusters = np.random.default_rng(0).integers(0, 1000, n)
    cluster_file = tmp_path / "clusters.json"
    cluster_file.write_text(json.dumps(clusters.tolist()))
    w = tmp_path / "w"
    cmd = [sys.executable, "-m", "lpjax.launch", "--config=configs/select_only.py", f"--config.workdir={w}",
           f"--config.data.source={ALPACA}", f"--config.select.score_files={os.path.join(REF, 'alpaca-opt-350m')}",
           f"--config.select.compare=('{os.path.join(REF, 'alpaca-opt-13b')}',)",
           "--config.cluster.method=file", f"--config.cluster.file={cluster_file}", "--config.select.percent=1",
           "--config.select.baselines=('clust_rand',)", "--config.select.export_formats=('jsonl',)"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900, env=launch_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    chosen = json.load(open(w / "select" / "indices_lp_app.json"))
    assert sorted(chosen) == official_rule(reference_lp_app("alpaca-opt-350m"), clusters, 1)
    rand = json.load(open(w / "select" / "indices_clust_rand.json"))
    assert np.array_equal(np.bincount(clusters[rand], minlength=1000), np.bincount(clusters[chosen], minlength=1000))
    report = open(w / "report.md").read()
    assert "0.714" in report  # Kendall tau-b, OPT-350M vs OPT-13B LP_app (docs/method.md)
    assert not os.path.exists(w / "probe")  # no model was run
