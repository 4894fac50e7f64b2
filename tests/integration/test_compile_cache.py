"""The persistent compilation cache: a second run with the same shapes loads
its compiled steps instead of compiling them (in under a tenth of the
first run's compile seconds), computes the same scores bit for bit, and
both runs report their compile and trace seconds in metrics.jsonl."""
import json
import os
import subprocess
import sys

import numpy as np

from tests.conftest import REPO, TEST_XLA_FLAGS


def probe_run(workdir, cache):
    cmd = [sys.executable, "-m", "lpjax.launch", "--config=configs/lp_app.py:micro", f"--config.workdir={workdir}",
           "--config.target.enabled=False", "--config.evaluate.enabled=False"]
    env = {**os.environ, "XLA_FLAGS": TEST_XLA_FLAGS, "LPJAX_CACHE_DIR": str(cache)}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    import tensorstore as ts

    spec = {"driver": "zarr", "kvstore": {"driver": "file", "path": os.path.join(workdir, "probe", "scores", "ppl")}}
    return metrics, np.asarray(ts.open(spec).result().read().result())


def test_second_run_loads_compiled_steps_and_scores_the_same(tmp_path):
    cache = tmp_path / "cache"
    first, ppl_first = probe_run(tmp_path / "a", cache)
    assert os.listdir(cache / "xla")  # compiled steps were stored
    second, ppl_second = probe_run(tmp_path / "b", cache)
    np.testing.assert_array_equal(ppl_second, ppl_first)

    def compile_totals(metrics):
        scoring = [m for m in metrics if m["stage"] == "probe_score"]
        train = [m for m in metrics if m["stage"] == "probe" and "compile_s" in m][-1]
        assert all(m["compiles"] >= 1 and m["compile_s"] > 0 for m in scoring[:1])
        records = scoring + [train]
        return (sum(m["compile_s"] for m in records), sum(m["trace_s"] for m in records),
                sum(m["compile_cache_hits"] for m in records))

    (compile1, trace1, hits1), (compile2, trace2, hits2) = compile_totals(first), compile_totals(second)
    assert hits2 > hits1  # the second run's steps came from the cache
    # XLA's part (compiling, or loading from the cache) falls more than
    # tenfold; tracing and lowering, which no cache saves, stay.
    assert compile2 < compile1 / 10, (compile1, compile2)
    assert compile2 + trace2 < compile1 + trace1, (compile1, trace1, compile2, trace2)
