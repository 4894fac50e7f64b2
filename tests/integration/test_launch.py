"""The launcher end to end on the micro config, each run a process of its
own as a user's is (forked from one interpreter that imported lpjax once:
tests/forked_launch.py), with the XLA flags a user's run has."""
import json
from importlib import metadata
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from lpjax.data.formats import fingerprint, load_records
from tests.conftest import REPO, wait_for_committed_checkpoint
from tests.forked_launch import LaunchServer
from lpjax.selection.metrics import lp_app



@pytest.fixture(scope="module")
def server():
    launcher = LaunchServer(cwd=REPO, env={**os.environ, "XLA_FLAGS": ""}, timeout=600)  # one CPU device
    yield launcher
    launcher.close()


def launch(server, workdir, *overrides, config="configs/lp_app.py:micro"):
    return server.run([f"--config={config}", f"--config.workdir={workdir}", *overrides])


class _Running:
    """poll() for a child of the launch server (not of this process)."""

    def __init__(self, pid):
        self.pid = pid

    def poll(self):
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return 0
        return 0 if state in "ZX" else None


def actions(workdir):
    with open(os.path.join(workdir, "stages.jsonl")) as f:
        return [json.loads(line) for line in f]


def per_kind_hardest(records, metric, percent):
    """The authors' chunk rule with one cluster per `kind`, recomputed here:
    in every cluster (sorted by name) the first of round(100 / percent)
    numpy.array_split chunks of its members sorted by the metric (low = hard)."""
    chosen = []
    for kind in sorted({r["kind"] for r in records}):
        members = [i for i, r in enumerate(records) if r["kind"] == kind]
        ordered = sorted(members, key=lambda i: (metric[i], i))
        chosen += np.array_split(np.asarray(ordered), round(100 / percent))[0].tolist()
    return sorted(chosen)


def read_scores(workdir):
    import tensorstore as ts

    spec = {"driver": "zarr", "kvstore": {"driver": "file", "path": os.path.join(workdir, "probe", "scores", "ppl")}}
    return np.asarray(ts.open(spec).result().read().result())


@pytest.fixture(scope="module")
def first_run(server, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("run"))
    proc = launch(server, workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir


def test_run_writes_report_scores_and_selection(first_run):
    w = first_run
    report = open(os.path.join(w, "report.md")).read()
    for name in ("lp_app", "random", "full"):
        assert f"| {name} |" in report
    ppl = read_scores(w)
    train = load_records(os.path.join(w, "data", "train.jsonl"))
    assert ppl.shape == (2, len(train))  # P0 and P1 for the 1-epoch LP_app config
    assert np.all(np.isfinite(ppl)) and np.all(ppl >= 1.0)
    assert ppl[1].mean() < ppl[0].mean()  # the probe learned something
    chosen = json.load(open(os.path.join(w, "select", "indices_lp_app.json")))
    # The selection: the 25 % with the lowest (P0 - P1) / P0 of every task family (the micro config's
    # clusters), recomputed here from the stored ppl.
    assert sorted(chosen) == per_kind_hardest(train, lp_app(ppl.astype(np.float64)), 25.0)
    assert "the 25 % hardest of every cluster, the values of the field `kind` (9)" in report
    assert "## Selection audit" in report and os.path.getsize(os.path.join(w, "select", "hardness_map.png")) > 1000
    subset = load_records(os.path.join(w, "select", "subset_lp_app.jsonl"))
    assert [r["output"] for r in subset] == [train[i]["output"] for i in chosen]
    run = json.load(open(os.path.join(w, "run.json")))
    assert run["data_fingerprint"] == fingerprint(train) and run["versions"]["jax"] == metadata.version("jax")
    metrics = [json.loads(line) for line in open(os.path.join(w, "metrics.jsonl"))]
    assert any(m.get("stage") == "probe" and "samples_per_s" in m for m in metrics)


def test_rerun_skips_and_a_percent_change_and_back_reuses_both_selections(first_run, server):
    w = first_run
    n = len(actions(w))
    assert launch(server, w).returncode == 0
    again = actions(w)[n:]
    assert again and all(a["action"] == "skipped" for a in again)

    first_select = os.path.realpath(os.path.join(w, "select"))
    first_indices = json.load(open(os.path.join(w, "select", "indices_lp_app.json")))
    n = len(actions(w))
    assert launch(server, w, "--config.select.percent=50").returncode == 0
    ran = {a["stage"] for a in actions(w)[n:] if a["action"] == "ran"}
    # The probe is shared; the full-data target's subset did not change, so it is reused too.
    assert ran == {"select", "report"} | {f"{stage}/{subset}" for stage in ("target", "evaluate")
                                         for subset in ("lp_app", "random", "random_tokens", "longest")}
    train = load_records(os.path.join(w, "data", "train.jsonl"))
    half = per_kind_hardest(train, lp_app(read_scores(w).astype(np.float64)), 50.0)
    assert sorted(json.load(open(os.path.join(w, "select", "indices_lp_app.json")))) == half
    assert f"| lp_app | {len(half)} |" in open(os.path.join(w, "report.md")).read()

    n = len(actions(w))
    assert launch(server, w, "--config.select.percent=25").returncode == 0
    back = actions(w)[n:]
    assert back and all(a["action"] == "skipped" for a in back), back  # both selections were kept
    assert os.path.realpath(os.path.join(w, "select")) == first_select
    assert json.load(open(os.path.join(w, "select", "indices_lp_app.json"))) == first_indices
    assert f"| lp_app | {len(first_indices)} |" in open(os.path.join(w, "report.md")).read()
    assert len(os.listdir(os.path.join(w, "store", "select"))) == 2 * 2  # two outputs (+ their lock files)


def test_other_seed_gives_a_different_valid_run(first_run, server, tmp_path):
    proc = launch(server, str(tmp_path), "--config.seed=7", "--config.target.enabled=False",
                  "--config.evaluate.enabled=False")
    assert proc.returncode == 0, proc.stderr[-3000:]
    fp = lambda w: json.load(open(os.path.join(w, "run.json")))["data_fingerprint"]
    assert fp(str(tmp_path)) != fp(first_run)
    chosen = json.load(open(os.path.join(tmp_path, "select", "indices_lp_app.json")))
    # 240 records, nine families of 26 or 27: ceil(n / 4) of each.
    assert len(set(chosen)) == len(chosen) == 63 and all(0 <= i < 240 for i in chosen)
    assert os.path.exists(os.path.join(tmp_path, "report.md"))


def test_killed_run_resumes_to_the_uninterrupted_scores(first_run, server, tmp_path):
    """SIGKILL mid-epoch during probe training, rerun the same command: the
    per-epoch perplexities equal the uninterrupted run's bit for bit."""
    w = str(tmp_path)
    # The probe is what is killed and compared: no targets after it.
    args = ["--config.probe.train.checkpoint_every=4", "--config.target.enabled=False",
            "--config.evaluate.enabled=False"]
    pid = server.start(["--config=configs/lp_app.py:micro", f"--config.workdir={w}", *args])
    ckpt = os.path.join(w, "probe", "ckpt")
    wait_for_committed_checkpoint(_Running(pid), ckpt, 300)
    os.kill(pid, signal.SIGKILL)
    assert server.wait(pid).returncode == -signal.SIGKILL
    assert not json.load(open(os.path.join(w, "probe", "stage.json")))["done"]  # killed inside the probe
    done = launch(server, w, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed at step" in done.stderr
    np.testing.assert_array_equal(read_scores(w), read_scores(first_run))


def test_batch_that_does_not_split_over_the_mesh_is_refused_before_the_data_stage(tmp_path):
    """On 8 devices (the other bad inputs, one device each, are the corpus of
    tests/integration/test_bad_inputs.py)."""
    overrides, field = ["--config.mesh.shape=(8,1,1)", "--config.target.train.batch_size=12"], "target.train.batch_size"
    w = tmp_path / "w"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    cmd = [sys.executable, "-m", "lpjax.launch", "--config=configs/lp_app.py:micro", f"--config.workdir={w}", *overrides]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(f"lpjax: {field}: "), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not os.path.exists(w / "data") and not os.path.exists(w / "store")
