"""Two processes on 127.0.0.1 (jax.distributed + gloo, 2 CPU devices each)
train and score a tiny model and match the single-process run."""
import json
import os
import socket
import subprocess
import sys

import numpy as np

from tests.conftest import REPO


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(num_processes, out):
    port = str(free_port())
    procs = [subprocess.Popen([sys.executable, "-m", "tests.integration.multihost_worker", str(i), str(num_processes), port, str(out)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(num_processes)]
    for p in procs:
        log, _ = p.communicate(timeout=600)
        assert p.returncode == 0, log[-3000:]
    return [json.load(open(os.path.join(out, f"result{i}.json"))) for i in range(num_processes)]


def test_two_processes_match_one(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    [single] = run(1, tmp_path / "one")
    two = run(2, tmp_path / "two")
    assert single["devices"] == 4 and all(r["devices"] == 4 and r["local"] == 2 for r in two)
    for r in two:
        np.testing.assert_array_equal(r["count"], single["count"])
        np.testing.assert_allclose(r["loss_sum"], single["loss_sum"], rtol=2e-5)
        np.testing.assert_allclose(r["params"], single["params"], rtol=1e-4, atol=1e-6)
    # Each process fed only its half of every batch, and together they fed every sample.
    a, b = two[0]["fed_train"], two[1]["fed_train"]
    assert len(a) == len(b) == 3
    for rows_a, rows_b, rows_single in zip(a, b, single["fed_train"]):
        assert len(rows_a) == len(rows_b) == 4 and not set(rows_a) & set(rows_b)
        assert sorted(rows_a + rows_b) == sorted(rows_single)
