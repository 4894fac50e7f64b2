"""Kill anywhere: the micro pipeline is SIGKILLed at points spread over every
stage (data, base, probe training, each scoring pass, cluster, select, each
target, evaluate, report; also inside a checkpoint save, a score-row write
and a file/directory write), rerun after each kill, and every output of the
finished run must equal, bit for bit, that of a run never killed.

The kills use lpjax/faults.py: LPJAX_KILL_AT=<label>:<n> makes the launcher
SIGKILL itself the n-th time (counted in that process) it reaches the named
point. The kills are chained in one workdir (each rerun resumes what the last
one left and is killed again further on), so the whole test costs about two
pipeline runs plus one start-up per kill, and the uninterrupted reference run
goes alongside in a second process. Every launch is a process of its own,
forked from one interpreter that imported lpjax once (tests/forked_launch.py).
"""
import json
import os
import re

import numpy as np
import pytest

from tests.conftest import REPO, launch_env
from tests.forked_launch import run_lanes

NUM_TRAIN = 240  # the micro variant's synthetic training records

# Every stage and both scoring passes: metric ifd1 makes the probe also score
# responses alone; a cluster file adds the cluster stage; checkpoints every few
# steps give mid-epoch resume points.
ARGS = ["--config=configs/lp_app.py:micro", "--config.select.metric=ifd1", "--config.select.baselines=('random',)",
        "--config.target.train.epochs=2", "--config.probe.train.checkpoint_every=4",
        "--config.target.train.checkpoint_every=2", "--config.cluster.method=file"]

# (label, n): in pipeline order; n counts within the process that resumes
# after the previous kill.
KILLS = [
    ("atomic-write", 3),               # data: train.jsonl written under its temporary name, not renamed
    ("atomic-dir", 1),                 # base: the tokenizer directory built, not swapped in
    ("step:base[llama-micro]", 5),     # base: mid-training, before any checkpoint
    ("ckpt-save", 1),                  # base: its epoch-end checkpoint in flight
    ("stage-end:base/llama-micro", 1),  # base: hf/ written, stage not marked done
    ("score-row", 1),                  # probe: row 0 of the templated pass half written (loss, no ppl)
    ("score-row", 2),                  # probe: row 0 of the response-only pass half written
    ("step:probe", 6),                 # probe: mid-epoch, after the step-4 checkpoint
    ("epoch-end:probe", 1),            # probe: epoch 1 scored, its checkpoint not yet saved
    ("stage:cluster", 1),
    ("stage-end:select", 1),           # select: indices and subsets written, not marked done
    ("step:target[ifd1]", 3),          # target: between its step-2 and step-4 checkpoints
    ("stage-end:target/ifd1", 1),      # target: params/ and hf/ written, not marked done
    ("stage-end:evaluate/ifd1", 1),
    ("ckpt-save", 2),                  # target[random]: its step-4 checkpoint in flight
    ("stage-end:report", 1),           # report.md written in the store, not marked done
]


def _job(name, workdir, cluster_file, kill=None):
    """One launch of the micro pipeline on ``workdir``; with ``kill``, set to
    SIGKILL itself at that point (and the chain stops unless it did)."""
    job = {"name": name, "argv": [*ARGS, f"--config.cluster.file={cluster_file}", f"--config.workdir={workdir}"],
           "env": {"LPJAX_KILL_AT": f"{kill[0]}:{kill[1]}" if kill else None}}
    return {**job, "stop_unless": -9} if kill else job


def _zarr(path):
    import tensorstore as ts

    return np.asarray(ts.open({"driver": "zarr", "kvstore": {"driver": "file", "path": path}}).result()
                      .read().result())


def _params(path):
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as ckptr:
        return ckptr.restore(os.path.abspath(path))


def _without_timings(report):
    """report.md with its wall-clock figures blanked: the seconds and
    compiling columns of the cost table and the base's pretraining time."""
    out, in_cost = [], False
    for line in report.splitlines():
        if line.startswith("## "):
            in_cost = line.startswith("## Cost")
        if in_cost and line.startswith("|") and not line.startswith("|---"):
            cells = line.split("|")
            cells[4] = cells[5] = " - "  # | step | tokens | FLOPs | seconds | of which compiling s | exact match |
            line = "|".join(cells)
        out.append(re.sub(r"FLOPs, [\d.]+ s\)", "FLOPs, - s)", line))
    return "\n".join(out)


def _outputs(w):
    """Every output a user reads, as bytes or arrays, by name."""
    out = {}
    files = ["data/train.jsonl", "data/test.jsonl", "data/source_index.json", "cluster/assignments.json",
             "select/metric.json", "select/summary.json", "base/llama-micro/hf/model.safetensors"]
    for subset in ("ifd1", "random"):  # the selection is named after its metric
        files += [f"select/indices_{subset}.json", f"select/subset_{subset}.jsonl",
                  f"target/{subset}/hf/model.safetensors", f"evaluate/{subset}/results.json"]
        params = _params(os.path.join(w, "target", subset, "params"))
        for path, leaf in zip(*[iter(_flatten(params))] * 2):
            out[f"target/{subset}/params:{path}"] = leaf
    for name in files:
        with open(os.path.join(w, name), "rb") as f:
            out[name] = f.read()
    for score_pass in ("scores", "scores_response_only"):
        for array in ("ppl", "loss"):
            out[f"probe/{score_pass}/{array}"] = _zarr(os.path.join(w, "probe", score_pass, array))
    with open(os.path.join(w, "report.md")) as f:
        out["report.md"] = _without_timings(f.read())
    return out


def _flatten(tree, prefix=""):
    if isinstance(tree, dict):
        for k in sorted(tree):
            yield from _flatten(tree[k], f"{prefix}/{k}")
    else:
        yield prefix
        yield np.asarray(tree)


@pytest.fixture(scope="module")
def cluster_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("clusters") / "clusters.json"
    path.write_text(json.dumps([i % 4 for i in range(NUM_TRAIN)]))
    return str(path)


def test_killed_anywhere_then_rerun_equals_the_uninterrupted_run(tmp_path, cluster_file):
    ref_dir, killed_dir = str(tmp_path / "reference"), str(tmp_path / "killed")
    # Two lanes side by side (two cores): the uninterrupted reference, and the
    # chain of kills and resumes in one workdir, each launch its own process
    # (forked from one interpreter that imported lpjax once:
    # tests/forked_launch.py). Every process shares the test session's
    # compilation cache (tests/conftest.py): a restart loads the compiled
    # steps instead of compiling them again (the executables are the same).
    chain = [_job(f"kill {label}:{n}", killed_dir, cluster_file, kill=(label, n)) for label, n in KILLS]
    chain.append(_job("resume to the end", killed_dir, cluster_file))
    env = launch_env()
    env.pop("LPJAX_KILL_AT", None)
    procs = run_lanes([[_job("reference", ref_dir, cluster_file)], chain], cwd=REPO, env=env, parallel=2,
                      timeout=900)
    seen = []
    for label, n in KILLS:
        proc = procs.get(f"kill {label}:{n}")
        assert proc is not None, (label, n, "not run: the kill before it failed")
        err, rc = proc.stderr, proc.returncode
        # Each point must really be reached (a kill that never fires tests nothing).
        assert rc == -9 and f"killed at {label}:{n}" in err, (label, n, rc, err[-3000:])
        seen.append(f"{label}:{n}")
    err, rc = procs["resume to the end"].stderr, procs["resume to the end"].returncode
    assert rc == 0, err[-3000:]
    ref_err = procs["reference"].stderr
    assert procs["reference"].returncode == 0, ref_err[-3000:]
    assert len(seen) == len(KILLS)

    want, got = _outputs(ref_dir), _outputs(killed_dir)
    assert sorted(got) == sorted(want)
    differ = [name for name in want if not (np.array_equal(want[name], got[name]) if isinstance(want[name], np.ndarray)
                                            else want[name] == got[name])]
    assert not differ, differ
    # The comparison is not vacuous: real scores, two different subsets, tuned weights.
    ppl = want["probe/scores/ppl"]
    assert ppl.shape == (2, NUM_TRAIN) and np.isfinite(ppl).all()
    assert want["select/indices_ifd1.json"] != want["select/indices_random.json"]
    # The temporary files the kills left were cleared when their stage resumed.
    leftovers = [os.path.join(root, name) for root, dirs, names in os.walk(killed_dir)
                 for name in dirs + names if name.endswith((".tmp", ".old")) or "tmp-" in name]
    assert not leftovers, leftovers
