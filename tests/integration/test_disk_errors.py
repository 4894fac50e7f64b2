"""A workdir on a full disk or without write permission: one line naming the
path, exit 2, and the same command after fixing it resumes (finished stages
are skipped). The select-only config keeps each run to seconds."""
import json
import os
import pickle
import shlex
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO, launch_env

N = 30


@pytest.fixture
def inputs(tmp_path):
    data = tmp_path / "data.json"
    data.write_text(json.dumps([{"instruction": f"say {i}", "input": "", "output": str(i)} for i in range(N)]))
    scores = tmp_path / "scores"
    scores.mkdir()
    rng = np.random.default_rng(0)
    for name in ("epoch-pre.pkl", "epoch-1.pkl"):
        (scores / name).write_bytes(pickle.dumps((1.5 + rng.random(N)).tolist()))
    return data, scores


def _launch(workdir, inputs, *extra, env_extra=None, drop_root_override=False):
    data, scores = inputs
    cmd = [sys.executable, "-m", "lpjax.launch", "--config=configs/select_only.py", f"--config.workdir={workdir}",
           f"--config.data.source={data}", f"--config.select.score_files={scores}",
           "--config.select.export_formats=('jsonl',)", "--config.select.percent=10", *extra]
    if drop_root_override and os.geteuid() == 0:
        # root writes through any mode bits; without these capabilities it obeys them as a user would.
        cmd = ["capsh", "--drop=cap_dac_override,cap_dac_read_search", "--", "-c", shlex.join(cmd)]
    env = launch_env(**(env_extra or {}))
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)


def _actions(workdir):
    with open(os.path.join(workdir, "stages.jsonl")) as f:
        return [(r["stage"], r["action"]) for r in map(json.loads, f)]


def _one_line(proc):
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("lpjax:")]
    assert len(lines) == 1 and proc.stderr.rstrip().endswith(lines[0]), proc.stderr[-3000:]
    return lines[0]


def test_full_disk_names_the_file_and_a_rerun_resumes(tmp_path, inputs):
    w = tmp_path / "w"
    # The 8th atomic write fails as on a full disk: past the data stage, inside select.
    proc = _launch(w, inputs, env_extra={"LPJAX_FAIL_AT": "atomic-write:8:ENOSPC"})
    line = _one_line(proc)
    assert line.startswith(f"lpjax: {os.path.realpath(w)}{os.sep}") or line.startswith(f"lpjax: {w}{os.sep}"), line
    assert "no space left on the device" in line and "rerun the same command" in line
    failed_path = line[len("lpjax: "):].split(": ", 1)[0]
    assert not os.path.exists(failed_path) or failed_path.endswith(".json")  # never a half-written file
    assert ("data", "ran") in _actions(w) and ("select", "ran") not in _actions(w)

    proc = _launch(w, inputs)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rerun = _actions(w)[-3:]
    assert rerun == [("data", "skipped"), ("select", "ran"), ("report", "ran")], rerun
    assert len(json.load(open(w / "select" / "indices_lp_app.json"))) == 3  # 10 % of 30


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("capsh"), reason="root without capsh ignores mode bits")
def test_workdir_without_write_permission_names_it_and_a_rerun_resumes(tmp_path, inputs):
    w = tmp_path / "w"
    assert _launch(w, inputs).returncode == 0
    first = len(_actions(w))
    os.chmod(w, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    try:
        proc = _launch(w, inputs, "--config.select.percent=20", drop_root_override=True)
        line = _one_line(proc)
        assert line.startswith(f"lpjax: {w}: permission denied; make it writable"), line
    finally:
        os.chmod(w, stat.S_IRWXU)
    assert len(_actions(w)) == first  # the refused run wrote nothing

    proc = _launch(w, inputs, "--config.select.percent=20", drop_root_override=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _actions(w)[first:] == [("data", "skipped"), ("select", "ran"), ("report", "ran")]
    assert len(json.load(open(w / "select" / "indices_lp_app.json"))) == 6  # 20 % of 30
