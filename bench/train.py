"""Benchmark: training-step throughput of lpjax against a plain PyTorch AdamW
step on transformers' LlamaForCausalLM, same model, same batches, in the
same process, interleaved.

    python bench/train.py                         # SmolLM2-135M + a tiny random Llama
    python bench/train.py --models tiny --steps 8 --repeats 3

Batches: the first --num Alpaca records (Alpaca template, max_len 512,
SmolLM2's tokenizer), shuffled once (seed 0), --batch-size records per step;
both sides take the same batches in the same order.

- ``torch``: model(input_ids, attention_mask, labels) (transformers' mean
  token loss over the response tokens; prompt and padding labels -100),
  backward, clip_grad_norm_(1.0), torch.optim.AdamW (lr 2e-5, weight decay
  0, eps 1e-8), zero_grad. Right-padded to the batch's longest record.
- lpjax (``--variants``): lpjax.training.train.make_train_step on one device
  (value_and_grad of lpjax.loss.token_mean_loss, optax clip + AdamW, params
  and state donated), jitted, lengths rounded up to --multiple:
  ``default``: the options of a default TrainConfig (what a run gets with
  no knob turned: the LM head only at response positions);
  ``fixed``: the full-length head;
  ``fast``: the default plus the shared template prefixes computed once per
  batch (train.shared_prefix).

tokens/s counts the records' own tokens (prompt + response, no padding); the
median over --repeats passes of --steps steps (after one compiling / warm-up
pass). FLOPs: 3 x the forward FLOPs (forward + backward), useful and executed
as in bench/score.py, against the fp32 matmul peak measured at start and end. The
first step's loss of every lpjax variant is checked against torch's
(relative 1e-5).
"""
from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402


def parse_args():
    p = common.base_parser(__doc__, 128)
    p.add_argument("--models", default="smollm2,tiny")
    p.add_argument("--variants", default="default,fixed,fast")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--multiple", type=int, default=16)
    p.add_argument("--steps", type=int, default=4, help="steps per timed pass")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--tiny-dir", default="/tmp/lpjax_bench_tiny_llama")
    p.add_argument("--json")
    return p.parse_args()


ARGS = parse_args()
CPUS = common.setup_threads(ARGS.threads)

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from flax import nnx  # noqa: E402

from lpjax import sharding  # noqa: E402
from lpjax.data import batching  # noqa: E402
from lpjax.models.hf import load_hf  # noqa: E402
from lpjax.config import TrainConfig  # noqa: E402
from lpjax.training.train import make_optimizer, make_train_step  # noqa: E402

torch.set_num_threads(ARGS.threads)
LR = 2e-5
_DEFAULT = TrainConfig()
VARIANTS = {
    # name: the TrainConfig loss options it runs with
    "default": dict(response_head=_DEFAULT.response_head, shared_prefix=_DEFAULT.shared_prefix),
    "fixed": dict(response_head=False, shared_prefix=False),
    "fast": dict(response_head=True, shared_prefix=True),
}


def batch_indices(n: int) -> list[list[int]]:
    order = batching.epoch_order(n, 0, 0)
    return [order[s : s + ARGS.batch_size].tolist() for s in range(0, n, ARGS.batch_size)
            if s + ARGS.batch_size <= n]


class LpjaxTrainer:
    def __init__(self, variant: str, ckpt: str, examples, batches, flops: common.LlamaFlops):
        model, _ = load_hf(ckpt, compute_dtype=ARGS.compute_dtype)
        graphdef, params = nnx.split(model)
        cfg = TrainConfig(**VARIANTS[variant], lr=LR, warmup_ratio=0.03, weight_decay=0.0, b1=0.9, b2=0.999,
                          max_grad_norm=1.0, pad_multiple=ARGS.multiple)
        # The batches train() would build with these options (lpjax/training/train.py).
        prefixes = batching.shared_prefixes(examples) if cfg.shared_prefix else None
        resp_multiple = cfg.pad_multiple if cfg.response_head else None
        self.batches = []
        executed = 0.0
        for idx in batches:
            planned = batching.fixed_batch(examples, idx, len(idx), cfg.pad_multiple, resp_multiple=resp_multiple,
                                           prefixes=prefixes)
            b = batching.collate_plan(examples, planned, prefixes)
            b.pop("index")
            self.batches.append(b)
            rows, length = b["tokens"].shape
            head = b["resp_pos"].shape[1] if resp_multiple else length
            pmax = 0 if prefixes is None else prefixes.tokens.shape[1]
            executed += rows * length * flops.per_token_layers + rows * head * flops.per_position_head
            executed += flops.attention(rows * length, length + pmax)
            if pmax:
                kp = prefixes.tokens.shape[0]
                executed += kp * pmax * flops.per_token_layers + flops.attention(kp * pmax, pmax)
        self.executed_per_batch = 3 * executed / len(batches)
        # lpjax's own train step (one device): params and optimizer state donated.
        mesh = sharding.make_mesh((1, 1, 1), jax.devices()[:1])
        param_sh = sharding.param_shardings(params, mesh)
        self.params = jax.device_put(params, param_sh)
        tx = make_optimizer(cfg)
        self.lr = np.float32(LR)  # a constant rate: the step's cost does not depend on it
        self.opt_state = jax.jit(tx.init)(self.params)
        opt_sh = jax.tree_util.tree_map(lambda x: x.sharding, self.opt_state)
        self.step = make_train_step(graphdef, tx, param_sh, opt_sh, mesh, batch_keys=sorted(self.batches[0]))
        self.stats = {"shapes": len({tuple(v.shape for v in b.values()) for b in self.batches}),
                      "prefixes": None if prefixes is None else prefixes.lengths[1:].tolist()}
        self.cursor = 0

    def run(self, steps: int) -> list[float]:
        losses = []
        for _ in range(steps):
            b = self.batches[self.cursor % len(self.batches)]
            self.cursor += 1
            self.params, self.opt_state, loss = self.step(self.params, self.opt_state, self.lr, b)
            losses.append(loss)
        return [float(x) for x in losses]


class TorchTrainer:
    def __init__(self, ckpt: str, examples, batches, pad_id: int, flops: common.LlamaFlops):
        from transformers import AutoModelForCausalLM

        self.model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32, local_files_only=True).train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=LR, weight_decay=0.0, eps=1e-8)
        self.batches = [common.torch_batch([examples[i] for i in idx], pad_id) for idx in batches]
        executed = 0.0
        for ids, _, _ in self.batches:
            rows, width = ids.shape
            executed += rows * width * (flops.per_token_layers + flops.per_position_head)
            executed += flops.attention(rows * width, width)
        self.executed_per_batch = 3 * executed / len(batches)
        self.stats = {}
        self.cursor = 0

    def run(self, steps: int) -> list[float]:
        losses = []
        for _ in range(steps):
            ids, mask, labels = self.batches[self.cursor % len(self.batches)]
            self.cursor += 1
            loss = self.model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
        return losses


def bench_model(name: str, ckpt: str, tokenizer, examples) -> dict:
    flops = common.LlamaFlops.from_hf(common.read_hf_config(ckpt))
    batches = batch_indices(len(examples))
    tokens_per_batch = [sum(len(examples[i].ids) for i in idx) for idx in batches]
    useful_per_batch = [3 * flops.useful([len(examples[i].ids) for i in idx],
                                         [batching.response_positions(examples[i]) for i in idx]) for idx in batches]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    sides = {"torch": TorchTrainer(ckpt, examples, batches, pad, flops)}
    for v in ARGS.variants.split(","):
        sides[f"lpjax[{v}]"] = LpjaxTrainer(v, ckpt, examples, batches, flops)
    # Warm-up / compiling pass: every distinct batch once (lpjax compiles per
    # shape); its first loss is the untrained model's on batch 0.
    first_loss, first = {}, {}
    for k, side in sides.items():
        t0 = time.perf_counter()
        first_loss[k] = side.run(len(batches))[0]
        first[k] = time.perf_counter() - t0
        print(f"  [{name}] warm-up {k}: {first[k]:.1f}s, first loss {first_loss[k]:.6f}", flush=True)
    times = {k: [] for k in sides}
    toks = {k: [] for k in sides}
    order = list(sides)
    for r in range(ARGS.repeats):
        for k in (order if r % 2 == 0 else order[::-1]):
            side = sides[k]
            start = side.cursor
            t0 = time.perf_counter()
            side.run(ARGS.steps)
            times[k].append(time.perf_counter() - t0)
            toks[k].append(sum(tokens_per_batch[(start + s) % len(batches)] for s in range(ARGS.steps)))
            print(f"  [{name}] repeat {r} {k}: {times[k][-1]:.1f}s {toks[k][-1] / times[k][-1]:.0f} tokens/s "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
    useful_tok = sum(useful_per_batch) / sum(tokens_per_batch)  # FLOPs per real token
    results = {}
    for k, side in sides.items():
        rates = [t / s for t, s in zip(toks[k], times[k])]
        rate = float(np.median(rates))
        executed_tok = side.executed_per_batch * len(batches) / sum(tokens_per_batch)
        results[k] = {
            "seconds": times[k], "warmup_seconds": first[k], "tokens_per_s": rate,
            "useful_gflops": rate * useful_tok / 1e9, "executed_gflops": rate * executed_tok / 1e9,
            "first_loss": first_loss[k],
            "first_loss_rel_diff": abs(first_loss[k] - first_loss["torch"]) / abs(first_loss["torch"]),
            **side.stats,
        }
    for k in results:
        results[k]["speedup_vs_torch"] = results[k]["tokens_per_s"] / results["torch"]["tokens_per_s"]
    return {"model": name, "batches": len(batches), "batch_size": ARGS.batch_size,
            "tokens_per_step": float(np.mean(tokens_per_batch)), "sides": results}


def main() -> int:
    info, peak, runs = common.run_models(ARGS, bench_model)
    print()
    common.print_machine(info, peak)
    worst = 0.0
    for run in runs:
        print(f"\n{run['model']}: train steps of {run['batch_size']} records, {run['tokens_per_step']:.0f} tokens/step "
              f"on average, {ARGS.steps} steps x {ARGS.repeats} timed passes")
        rows = [common.RATE_HEADERS + ["first loss", "rel diff", "warm-up s"]]
        for k, r in run["sides"].items():
            rows.append(common.rate_cells(k, r) + [
                f"{r['first_loss']:.6f}", "-" if k == "torch" else f"{r['first_loss_rel_diff']:.1e}",
                f"{r['warmup_seconds']:.1f}"])
            if k != "torch":
                worst = max(worst, r["first_loss_rel_diff"])
        print(common.fmt_table(rows))
    if ARGS.json:
        with open(ARGS.json, "w") as f:
            json.dump({"machine": info, "peak": peak, "git": common.git_revision(), "args": vars(ARGS),
                       "runs": runs}, f, indent=2, default=str)
    limit = common.tolerance(ARGS, 1e-5)
    print(f"\nmax relative first-step loss difference vs torch: {worst:.2e} ({'OK' if worst < limit else 'FAIL'}: "
          f"< {limit}) with lpjax compute dtype {ARGS.compute_dtype}")
    return 0 if worst < limit else 1


if __name__ == "__main__":
    sys.exit(main())
