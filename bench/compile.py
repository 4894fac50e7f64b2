"""Benchmark: seconds to compile SmolLM2 training-step shapes, the price of
every batch shape an epoch meets for the first time, against an earlier
revision of lpjax in the same run.

    python bench/compile.py                                   # [8, 256], then [8, 192] and [8, 336]
    python bench/compile.py --baseline b26774c --lengths 256,192,336 --repeats 3

Each measurement is a fresh process (JAX's persistent compilation cache
off) that builds SmolLM2-135M, AdamW and the train step the way
``lpjax.training.train`` does with a default ``TrainConfig`` (on CPU with
its compile options), then, for each [batch, L] of ``--lengths`` in turn,
compiles it through ``AotFunction`` as training does, timing tracing and
lowering to StableHLO (Python work that no cache saves) and XLA's compile,
and runs --steps steps. The first length is the first shape of a run:
everything that must compile before its first step. Each later length is a
new shape in a process that already ran one: what a further batch shape of
an epoch adds (lpjax now compiles the gradient per shape and AdamW's update
once per run; earlier revisions, the whole step per shape). ``--baseline
REF`` checks REF out into a temporary git worktree and measures it the same
way, the revisions alternating so that a change of load hits both. b26774c
is the last revision with one module per decoder layer (XLA then compiled
all 30 layers); its successors run one scanned layer.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402

# Runs inside each measured process, against whichever lpjax is on its path
# (this tree or the baseline's worktree); it adapts to the revision's API.
CHILD = r"""
import json, sys, time
import jax, numpy as np
from flax import nnx
jax.config.update("jax_enable_compilation_cache", False)
from lpjax import sharding
from lpjax.aot import AotFunction, compile_stats
from lpjax.config import TrainConfig
from lpjax.models.hf import load_hf
from lpjax.training.train import make_optimizer, make_train_step
ckpt, dtype, batch_size, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
lengths = [int(x) for x in sys.argv[5].split(",")]
model, _ = load_hf(ckpt, compute_dtype=dtype)
graphdef, params = nnx.split(model)
mesh = sharding.make_mesh((1, 1, 1), jax.devices()[:1])
param_sh = sharding.param_shardings(params, mesh)
params = jax.device_put(params, param_sh)
tx = make_optimizer(TrainConfig())
opt = jax.jit(tx.init)(params)
opt_sh = jax.tree_util.tree_map(lambda x: x.sharding, opt)
step = make_train_step(graphdef, tx, param_sh, opt_sh, mesh)
lr = np.float32(1e-5)
# Compiled as train() compiles them: through AotFunction, which times
# tracing + lowering and XLA's compile separately (compile_stats).
split = hasattr(step, "grads")  # a gradient program per shape and one update
if split:
    step = step.compiled_ahead("bench")
    grads, update = step.grads, step.update
else:
    whole = AotFunction(step, "step")
out = []
for length in lengths:
    tokens = np.random.default_rng(length).integers(0, model.cfg.vocab_size, (batch_size, length)).astype(np.int32)
    batch = {"tokens": tokens, "targets": np.roll(tokens, -1, 1), "loss_mask": np.ones(tokens.shape, np.float32)}
    before = compile_stats()
    if split:
        grads.precompile([(params, batch)])
        update.precompile([(params, opt, lr, params)])  # once per process
    else:
        whole.precompile([(params, opt, lr, batch)])
    spent = compile_stats().since(before)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        if split:
            loss, g = grads(params, batch)
            params, opt = update(params, opt, lr, g)
            del g
        else:
            params, opt, loss = whole(params, opt, lr, batch)
        loss.block_until_ready()
        times.append(time.perf_counter() - t)
    out.append({"length": length, "trace_s": spent.trace_seconds, "compile_s": spent.seconds, "step_s": times})
import lpjax
print("RESULT " + json.dumps({"shapes": out, "lpjax": lpjax.__file__}))
"""


def parse_args():
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default=common.DEFAULT_CKPT, help="SmolLM2-135M-Instruct HF dir (converted if missing)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compute-dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--baseline", help="a git revision to measure in the same run (e.g. b26774c)")
    p.add_argument("--lengths", default="256,192,336",
                   help="sequence lengths L of the [batch, L] shapes each process compiles, in this order: "
                        "the first is the run's first shape, the others new shapes after it")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per revision")
    p.add_argument("--steps", type=int, default=1, help="steps run after each compile (their seconds are printed)")
    p.add_argument("--json")
    return p.parse_args()


ARGS = parse_args()
CPUS = common.setup_threads(ARGS.threads)


def measure(tree: str) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": tree}  # setup_threads set JAX_PLATFORMS and the threads
    argv = [ARGS.ckpt, ARGS.compute_dtype, str(ARGS.batch_size), str(ARGS.steps), ARGS.lengths]
    proc = subprocess.run([sys.executable, "-c", CHILD, *argv], cwd=tree, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.exit(f"measuring {tree} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    if not os.path.realpath(result["lpjax"]).startswith(os.path.realpath(tree) + os.sep):
        sys.exit(f"measuring {tree} imported lpjax from {result['lpjax']}")
    return result["shapes"]


def span(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def main() -> int:
    common.ensure_checkpoint(ARGS.ckpt)
    info = common.machine_info(ARGS.threads)
    lengths = [int(x) for x in ARGS.lengths.split(",")]
    trees = {f"HEAD ({common.git_revision()})": common.REPO}
    with tempfile.TemporaryDirectory() as tmp:
        if ARGS.baseline:
            worktree = os.path.join(tmp, "baseline")
            subprocess.run(["git", "-C", common.REPO, "worktree", "add", "--detach", worktree, ARGS.baseline],
                           check=True, capture_output=True)
            trees = {f"{ARGS.baseline} (baseline)": worktree, **trees}
        try:
            results = {name: {n: [] for n in lengths} for name in trees}
            for rep in range(ARGS.repeats):
                for name, tree in trees.items():
                    for r in measure(tree):
                        results[name][r["length"]].append(r)
                        print(f"[{rep + 1}/{ARGS.repeats}] {name} L={r['length']}: trace {r['trace_s']:.2f} s, "
                              f"compile {r['compile_s']:.2f} s, steps {[round(s, 2) for s in r['step_s']]}",
                              flush=True)
        finally:
            if ARGS.baseline:
                subprocess.run(["git", "-C", common.REPO, "worktree", "remove", "--force", worktree],
                               capture_output=True)
    print()
    common.print_machine(info)
    print(f"\nSmolLM2-135M train step (AdamW, {ARGS.compute_dtype}, default TrainConfig), [{ARGS.batch_size}, L] "
          f"random tokens, L = {ARGS.lengths} in that order in each fresh process (no persistent cache), "
          f"{ARGS.repeats} processes per revision (min-max):")
    rows = [["revision", "shape", "trace s", "compile s", "trace + compile s (median)", "first step s",
             "later steps s (median)"]]
    medians = {}
    for name in trees:
        for i, length in enumerate(lengths):
            rs = results[name][length]
            total = [r["trace_s"] + r["compile_s"] for r in rs]
            medians[name, length] = statistics.median(total)
            # The first step of a shape also pays for faulting in its temporaries.
            first = [r["step_s"][0] for r in rs if r["step_s"]]
            later = [s for r in rs for s in r["step_s"][1:]]
            rows.append([name, f"L={length} ({'first' if i == 0 else 'new'})", span([r["trace_s"] for r in rs]),
                         span([r["compile_s"] for r in rs]), f"{span(total)} ({medians[name, length]:.2f})",
                         span(first) if first else "-",
                         f"{span(later)} ({statistics.median(later):.2f})" if later else "-"])
    print(common.fmt_table(rows))
    if ARGS.baseline:
        base, head = list(trees)
        for i, length in enumerate(lengths):
            print(f"L={length} ({'the first shape' if i == 0 else 'a new shape'}): trace + compile "
                  f"{medians[base, length] / medians[head, length]:.2f}x faster than {ARGS.baseline} (medians)")
    if ARGS.json:
        with open(ARGS.json, "w") as f:
            json.dump({"machine": info, "git": common.git_revision(),
                       "args": vars(ARGS), "results": {k: {str(n): v for n, v in r.items()}
                                                       for k, r in results.items()}}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
