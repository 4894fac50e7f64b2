"""The persistent compilation cache: a second run with the same shapes loads
its compiled steps instead of compiling them (in under a tenth of the
first run's compile seconds), computes the same scores bit for bit, and
both runs report their compile and trace seconds in metrics.jsonl."""
import json
import os

import numpy as np

from tests.conftest import REPO, launch_env
from tests.forked_launch import run_lanes


def probe_runs(workdirs, cache):
    """The same probe-only run in each workdir, one after another (each a
    process of its own, tests/forked_launch.py), sharing one cache; returns
    each run's metrics and scores."""
    # XLA's default options for the train step: with the fast-compile ones
    # the micro model's gradient compiles in ~0.1-0.2 s, only 4-5x a cache
    # load (0.02-0.05 s), so the two runs' XLA seconds differ ~7x, not the
    # tenfold this test holds the cache to for programs worth caching.
    args = ["--config=configs/lp_app.py:micro", "--config.target.enabled=False", "--config.evaluate.enabled=False",
            "--config.probe.train.fast_compile=False"]
    env = launch_env(LPJAX_CACHE_DIR=str(cache))
    lane = [{"name": str(w), "argv": [*args, f"--config.workdir={w}"], "stop_unless": 0} for w in workdirs]
    done = run_lanes([lane], cwd=REPO, env=env, parallel=1, timeout=600)
    import tensorstore as ts

    out = []
    for w in workdirs:
        assert done[str(w)].returncode == 0, done[str(w)].stderr[-3000:]
        metrics = [json.loads(line) for line in open(os.path.join(w, "metrics.jsonl"))]
        spec = {"driver": "zarr", "kvstore": {"driver": "file", "path": os.path.join(w, "probe", "scores", "ppl")}}
        out.append((metrics, np.asarray(ts.open(spec).result().read().result())))
    return out


def test_second_run_loads_compiled_steps_and_scores_the_same(tmp_path):
    cache = tmp_path / "cache"
    (first, ppl_first), (second, ppl_second) = probe_runs([tmp_path / "a", tmp_path / "b"], cache)
    assert os.listdir(cache / "xla")  # compiled steps were stored
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
