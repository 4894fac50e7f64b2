"""launch/sweep.py end to end on a 3-point micro sweep (two seeds' probes
serve three points), in subprocesses as a user runs it: stages shared
through the store run once, a sweep killed midway and rerun ends bitwise
where an uninterrupted one does, the Slurm path runs through submitit's
local executor, and launch/aggregate.py reads the runs."""
import collections
import hashlib
import json
import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import REPO, launch_env, wait_for_committed_checkpoint

SWEEP = os.path.join(REPO, "tests", "integration", "sweeps", "tiny.py")
NAMES = ["seed=1__percent=25", "seed=1__percent=50", "seed=2__percent=25"]
# Orbax directories carry timestamps; stage.json and the report carry wall times.
NOT_COMPARED = {"ckpt", "params", "stage.json"}


def env():
    paths = [REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return launch_env(PYTHONPATH=os.pathsep.join(paths))


def sweep_cmd(runs, *extra):
    return [sys.executable, os.path.join(REPO, "launch", "sweep.py"), f"--sweep={SWEEP}", f"--runs={runs}", *extra]


def run_sweep(runs, *extra):
    return subprocess.run(sweep_cmd(runs, *extra), cwd=REPO, capture_output=True, text=True, env=env(), timeout=900)


def records(runs):
    """Every stages.jsonl record of every point."""
    out = []
    for name in sorted(os.listdir(os.path.join(runs, "points"))):
        with open(os.path.join(runs, "points", name, "stages.jsonl")) as f:
            out += [json.loads(line) for line in f]
    return out


def stage_keys(runs, name):
    with open(os.path.join(runs, "points", name, "run.json")) as f:
        return json.load(f)["stages"]


def digests(directory):
    out = {}
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if d not in NOT_COMPARED]
        for f in files:
            if f not in NOT_COMPARED:
                with open(os.path.join(root, f), "rb") as fh:
                    out[os.path.relpath(os.path.join(root, f), directory)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    runs = str(tmp_path_factory.mktemp("sweep"))
    proc = run_sweep(runs)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "3 points: 3 ran, 0 already done, 0 failed" in proc.stdout
    return runs


def test_shared_stages_run_once_per_probe_data_seed(uninterrupted):
    runs = uninterrupted
    ran = collections.Counter(r["stage"] for r in records(runs) if r["action"] == "ran")
    # Two seeds: two data splits and two probes for three points; a select, target and evaluation per point.
    assert ran["probe"] == 2 and ran["data"] == 2, ran
    assert ran["select"] == ran["target/lp_app"] == ran["evaluate/lp_app"] == 3, ran
    keys = {n: stage_keys(runs, n) for n in NAMES}
    assert keys[NAMES[0]]["probe"] == keys[NAMES[1]]["probe"] != keys[NAMES[2]]["probe"]
    assert len([d for d in os.listdir(os.path.join(runs, "store", "probe")) if not d.endswith(".lock")]) == 2
    # The dry run computed the same keys without running anything.
    dry = subprocess.run(sweep_cmd(runs, "--dry-run"), cwd=REPO, capture_output=True, text=True, env=env(),
                         timeout=300)
    assert dry.returncode == 0 and "shared probes: 2 probe run(s) serve 3 points" in dry.stdout, dry.stderr[-2000:]
    for stage in ("data", "probe"):
        for key in {k[stage] for k in keys.values()}:
            assert key in dry.stdout
    # A rerun skips every point.
    again = run_sweep(runs)
    assert again.returncode == 0 and again.stdout.count("done earlier, skipped") == 3, again.stdout


def test_killed_sweep_reruns_to_the_uninterrupted_outputs(uninterrupted, tmp_path):
    runs = str(tmp_path)
    # The first two points (one probe) are enough to kill the second midway; fewer points, a shorter test.
    two = f"--only={NAMES[0]},{NAMES[1]}"
    proc = subprocess.Popen(sweep_cmd(runs, two), cwd=REPO, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    # Kill the sweep and its running point (one process group) once the
    # second point's target has a committed checkpoint: mid-training.
    ckpt = os.path.join(runs, "points", NAMES[1], "target", "lp_app", "ckpt")
    wait_for_committed_checkpoint(proc, ckpt, 600)
    assert proc.poll() is None, "the sweep ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    with open(os.path.join(runs, "points", NAMES[1], "target", "lp_app", "stage.json")) as f:
        assert not json.load(f)["done"]

    rerun = run_sweep(runs, two)
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert f"{NAMES[0]}: done earlier, skipped" in rerun.stdout
    with open(os.path.join(runs, "points", NAMES[1], "launch.log")) as f:
        assert "resumed at step" in f.read()
    # Exactly once: each output was produced by one run, and the store holds nothing else.
    ran = collections.Counter((r["stage"], r["key"]) for r in records(runs) if r["action"] == "ran")
    assert set(ran.values()) == {1}, ran
    used = collections.defaultdict(set)
    for name in NAMES[:2]:
        assert stage_keys(runs, name) == stage_keys(uninterrupted, name)
        for stage, key in stage_keys(runs, name).items():
            used[stage].add(key)
    for stage, keys in used.items():
        held = {d for d in os.listdir(os.path.join(runs, "store", stage)) if not d.endswith(".lock")}
        assert held == keys, stage
    assert set(ran) == {(s, k) for s, ks in used.items() for k in ks}
    # Bitwise: every output file (scores, selections, exported weights, results) equals the uninterrupted sweep's.
    for stage, keys in used.items():
        if stage == "report":  # it prints wall times
            continue
        for key in keys:
            got, want = (digests(os.path.join(r, "store", stage, key)) for r in (runs, uninterrupted))
            assert got and got == want, (stage, key)


def test_submitit_local_executor_runs_points_through_the_shared_store(uninterrupted, tmp_path):
    pytest.importorskip("submitit")
    runs = str(tmp_path)
    proc = run_sweep(runs, f"--store={os.path.join(uninterrupted, 'store')}", "--executor=submitit_local",
                     f"--only={NAMES[0]},{NAMES[1]}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 points: 2 ran, 0 already done, 0 failed" in proc.stdout
    for name in NAMES[:2]:
        with open(os.path.join(runs, "points", name, "point.json")) as f:
            assert json.load(f)["status"] == "done"
        assert stage_keys(runs, name) == stage_keys(uninterrupted, name)
    # Every stage came from the store the first sweep filled.
    assert {r["action"] for r in records(runs) if r["stage"] != "report"} == {"skipped"}
    with open(os.path.join(runs, "slurm", "array.sbatch")) as f:
        assert "#SBATCH --array=0-1%2" in f.read()
    assert subprocess.run(["bash", "-n", os.path.join(runs, "slurm", "array.sbatch")]).returncode == 0


def test_aggregate_reads_the_sweep(uninterrupted, tmp_path):
    out = str(tmp_path / "agg")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "launch", "aggregate.py"), uninterrupted, "--out", out],
                          cwd=REPO, capture_output=True, text=True, env=env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import csv

    with open(os.path.join(out, "results.csv")) as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["point"] for r in rows) == sorted(NAMES)
    for r in rows:
        with open(os.path.join(uninterrupted, "points", r["point"], "evaluate", "lp_app", "results.json")) as f:
            assert float(r["exact_match"]) == json.load(f)["exact_match"]
    report = open(os.path.join(out, "report.md")).read()
    assert "## Target quality against subset size" in report and os.path.exists(os.path.join(out, "quality_0.png"))


def test_failed_points_are_reported_and_the_rest_go_on(tmp_path):
    sweep = tmp_path / "bad.py"
    # Both points fail at config validation (seconds); the second runs although the first failed.
    sweep.write_text("CONFIG = 'configs/lp_app.py:micro'\n"
                     "def sweep():\n    return [{'select.percent': -5.0}, {'select.metric': 'nope'}]\n")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "launch", "sweep.py"), f"--sweep={sweep}",
                           f"--runs={tmp_path / 'runs'}"], cwd=REPO, capture_output=True, text=True, env=env(),
                          timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert "[1/2] percent=-5: FAILED: lpjax: select.percent: must be in (0, 100], got -5.0" in lines, proc.stdout
    assert any(line.startswith("[2/2] metric=nope: FAILED: lpjax: select.metric: ") for line in lines)
    assert "2 points: 0 ran, 0 already done, 2 failed" in proc.stdout
