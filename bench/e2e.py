"""Benchmark: the LP_app selection end to end, lpjax against the PyTorch way.

    python bench/e2e.py --num 64                 # SmolLM2-135M-Instruct, the first 64 Alpaca records
    python bench/e2e.py --num 256 --order lpjax,torch

The probe's whole job for LP_app: score every record (P0), fine-tune one
epoch, score every record again (P1); LP_app = (P0 - P1) / P0 ranks them.

- ``lpjax``: ``python -m lpjax.launch --config=configs/lp_app.py`` with
  SmolLM2 as the probe on the first --num Alpaca records (no held-out split,
  no target, no evaluation): the data, probe and select stages exactly as a
  user runs them, every speed option at its default (the scoring token
  budget measured on this machine, the response-only head, shared prefixes
  in scoring; training batches of 8, AdamW 2e-5, warmup + cosine). A fresh
  user cache (--cache, emptied first unless --warm) so the compile and
  autotune seconds are those of a first run; they are reported apart, from
  the run's metrics.jsonl.
- ``torch``: the same work the authors' way: transformers' LlamaForCausalLM
  in eager fp32; scoring in batches of --torch-score-batch in file order
  padded to the longest, full logits (bench/common.torch_response_ppl);
  training on the same shuffled batches of 8 (lpjax's epoch order) with
  model(labels) loss, clip_grad_norm_(1.0), torch.optim.AdamW and the same
  warmup + cosine schedule.

Both run in this one invocation, one after the other (--order), with
--threads threads each; the load average is printed with every figure. The
report gives each side's seconds per phase, tokens/s over the whole
selection (tokens = the records' prompt + response tokens x 2 passes +
1 epoch), P0's largest relative difference between the sides and the
Spearman correlation of their LP_app rankings.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402


def parse_args():
    p = common.base_parser(__doc__, 64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--torch-score-batch", type=int, default=4)
    p.add_argument("--order", default="torch,lpjax")
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "lpjax_bench_e2e"))
    p.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "lpjax_bench_e2e_cache"),
                   help="LPJAX_CACHE_DIR of the lpjax run (compiled steps, tuned budget)")
    p.add_argument("--warm", action="store_true", help="keep --cache (a rerun's figures) instead of emptying it")
    p.add_argument("--json")
    return p.parse_args()


ARGS = parse_args()
CPUS = common.setup_threads(ARGS.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lpjax.data import batching  # noqa: E402
from lpjax.data.tokenizer import load_tokenizer  # noqa: E402

torch.set_num_threads(ARGS.threads)


def load() -> tuple[list, int]:
    tok = load_tokenizer(ARGS.ckpt)
    examples = common.load_examples(tok, ARGS.data, ARGS.num, ARGS.max_len)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return examples, pad


def cosine_lr(step: int, total: int, warmup_ratio: float = 0.03) -> float:
    """lpjax's schedule (optax.warmup_cosine_decay_schedule as lr_schedule builds it), as a factor of lr."""
    warmup = math.ceil(warmup_ratio * total)
    decay = max(total, warmup + 1)
    if step < warmup:
        return step / warmup
    return 0.5 * (1 + math.cos(math.pi * min(step - warmup, decay - warmup) / (decay - warmup)))


def run_torch(examples, pad: int) -> dict:
    from transformers import AutoModelForCausalLM

    out = {"load_avg": [os.getloadavg()[0]]}
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(ARGS.ckpt, dtype=torch.float32, local_files_only=True).eval()
    out["load_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    p0 = common.torch_response_ppl(model, examples, pad, ARGS.torch_score_batch)
    out["p0_s"] = time.perf_counter() - t0
    out["load_avg"].append(os.getloadavg()[0])
    order = batching.epoch_order(len(examples), 0, 0)
    steps = [order[s : s + ARGS.batch_size] for s in range(0, len(order), ARGS.batch_size)]
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=ARGS.lr, weight_decay=0.0, eps=1e-8)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, len(steps)))
    t0 = time.perf_counter()
    for idx in steps:
        ids, mask, labels = common.torch_batch([examples[i] for i in idx], pad)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    out["train_s"] = time.perf_counter() - t0
    out["load_avg"].append(os.getloadavg()[0])
    model.eval()
    t0 = time.perf_counter()
    p1 = common.torch_response_ppl(model, examples, pad, ARGS.torch_score_batch)
    out["p1_s"] = time.perf_counter() - t0
    out["load_avg"].append(os.getloadavg()[0])
    out.update(p0=p0, p1=p1, compile_s=0.0)
    return out


def run_lpjax() -> dict:
    import tensorstore as ts

    if os.path.exists(ARGS.workdir):
        shutil.rmtree(ARGS.workdir)
    if not ARGS.warm and os.path.exists(ARGS.cache):
        shutil.rmtree(ARGS.cache)
    cmd = [sys.executable, "-m", "lpjax.launch", "--config=configs/lp_app.py", f"--config.workdir={ARGS.workdir}",
           f"--config.data.source={ARGS.data}", f"--config.data.limit={ARGS.num}", "--config.data.test_size=0",
           "--config.data.train_tokenizer=False", f"--config.data.max_len={ARGS.max_len}",
           f"--config.probe.model={ARGS.ckpt}", f"--config.probe.compute_dtype={ARGS.compute_dtype}",
           "--config.probe.train.epochs=1",
           f"--config.probe.train.batch_size={ARGS.batch_size}", f"--config.probe.train.lr={ARGS.lr}",
           "--config.probe.train.weight_decay=0.0", "--config.seed=0",
           "--config.target.enabled=False", "--config.evaluate.enabled=False", "--config.select.baselines=()",
           "--config.select.export_formats=('json',)"]
    env = {**os.environ, "LPJAX_CACHE_DIR": ARGS.cache}
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    proc = subprocess.run(cmd, cwd=common.REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"lpjax run failed:\n{proc.stderr[-4000:]}")
    stages = {}
    with open(os.path.join(ARGS.workdir, "stages.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            stages[r["stage"]] = r.get("seconds", 0.0)
    metrics = [json.loads(line) for line in open(os.path.join(ARGS.workdir, "metrics.jsonl"))]
    scores = [m for m in metrics if m.get("stage") == "probe_score"]
    train = [m for m in metrics if m.get("stage") == "probe" and "compile_s" in m]
    with open(os.path.join(ARGS.workdir, "probe", "stage.json")) as f:
        geometry = json.load(f)["summary"]["score_geometry"]
    ppl = np.asarray(ts.open({"driver": "zarr", "kvstore": {"driver": "file", "path": os.path.join(
        ARGS.workdir, "probe", "scores", "ppl")}}).result().read().result())
    # Compile seconds = XLA's compile (or cache load) + tracing and lowering.
    overhead = lambda m: m["compile_s"] + m.get("trace_s", 0.0)
    score_compile = sum(overhead(m) for m in scores)
    train_compile = overhead(train[-1]) if train else 0.0
    return {"wall_s": wall, "stages_s": stages, "p0_s": scores[0]["seconds"], "p1_s": scores[-1]["seconds"],
            "probe_s": stages.get("probe", 0.0), "score_compile_s": score_compile, "train_compile_s": train_compile,
            "compile_s": score_compile + train_compile, "geometry": geometry, "p0": ppl[0], "p1": ppl[1],
            "load_avg": [load0, os.getloadavg()[0]],
            "compile_cache_hits": sum(m.get("compile_cache_hits", 0) for m in scores)
            + (train[-1].get("compile_cache_hits", 0) if train else 0)}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> int:
    examples, pad = load()
    tokens = sum(len(ex.ids) for ex in examples)
    work = 3 * tokens  # P0 pass + one epoch + P1 pass
    info = common.machine_info(ARGS.threads)
    results = {}
    for side in ARGS.order.split(","):
        print(f"running {side} ...", flush=True)
        results[side] = run_torch(examples, pad) if side == "torch" else run_lpjax()
    t, j = results["torch"], results["lpjax"]
    t["selection_s"] = t["p0_s"] + t["train_s"] + t["p1_s"]
    j["selection_s"] = j["probe_s"]
    lp = {k: (r["p0"] - r["p1"]) / r["p0"] for k, r in results.items()}
    print()
    print(f"machine: {info['cpu_model']} [{' '.join(info['vector_extensions'])}] / {info['cores']} cores; "
          f"{info['threads']} threads; "
          f"GLIBC_TUNABLES '{info['glibc_tunables']}'; jax {info['jax']}, "
          f"torch {info['torch']}; {time.strftime('%Y-%m-%d')}")
    print(f"{ARGS.num} Alpaca records, {tokens} tokens (prompt + response); LP_app = P0 pass + 1 epoch (batches of "
          f"{ARGS.batch_size}) + P1 pass = {work} tokens of work")
    rows = [["side", "P0 pass s", "train epoch s", "P1 pass s", "selection s", "of which compile s",
             "tokens/s (selection)", "vs torch", "load avg"]]
    for name, r in (("torch (transformers eager + AdamW)", t), ("lpjax (lpjax.launch, defaults)", j)):
        train_s = r["train_s"] if "train_s" in r else r["selection_s"] - r["p0_s"] - r["p1_s"]
        rows.append([name, f"{r['p0_s']:.1f}", f"{train_s:.1f}", f"{r['p1_s']:.1f}", f"{r['selection_s']:.1f}",
                     f"{r['compile_s']:.1f}", f"{work / r['selection_s']:.0f}",
                     f"{t['selection_s'] / r['selection_s']:.2f}x",
                     "-".join(f"{x:.1f}" for x in r["load_avg"])])
    print(common.fmt_table(rows))
    excl = j["selection_s"] - j["compile_s"]
    print(f"lpjax without compiling: {excl:.1f}s ({t['selection_s'] / excl:.2f}x torch); compile: scoring "
          f"{j['score_compile_s']:.1f}s, train step {j['train_compile_s']:.1f}s, persistent-cache hits "
          f"{j['compile_cache_hits']}; the whole launch (data + probe + select, imports) {j['wall_s']:.1f}s")
    print(f"scoring geometry: {j['geometry']}")
    p0_diff = float(np.max(np.abs(j["p0"] - t["p0"]) / t["p0"]))
    print(f"P0 max rel diff {p0_diff:.1e}; P1 max rel diff {float(np.max(np.abs(j['p1'] - t['p1']) / t['p1'])):.1e}; "
          f"LP_app Spearman {spearman(lp['lpjax'], lp['torch']):.4f}")
    if ARGS.json:
        with open(ARGS.json, "w") as f:
            json.dump({"machine": info, "args": vars(ARGS), "tokens": tokens,
                       "results": {k: {x: (v.tolist() if isinstance(v, np.ndarray) else v) for x, v in r.items()}
                                   for k, r in results.items()}}, f, indent=2, default=str)
    return 0 if p0_diff < common.tolerance(ARGS, 1e-4) else 1


if __name__ == "__main__":
    sys.exit(main())
