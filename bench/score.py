"""Benchmark: scoring throughput (per-sample response perplexities) of lpjax
against transformers' PyTorch model, in the same process, interleaved.

    python bench/score.py                          # SmolLM2-135M + a tiny random Llama, 128 Alpaca records
    python bench/score.py --models tiny --repeats 5
    python bench/score.py --variants fixed,budget,budget+resp,fast --repeats 3   # ablation

Data: the first --num records of Alpaca-52K, Alpaca template, output + EOS,
max_len 512, tokenized by SmolLM2's tokenizer (both models use it).

Sides (each a full pass over the records, per-sample perplexities out):

- ``torch``: the reference, as the authors' script scores: eager fp32
  LlamaForCausalLM, batches of 4 in dataset order padded to the longest,
  attention mask, full logits, CrossEntropy over the response tokens.
- lpjax variants (``--variants``), each lpjax.scoring.score.score_examples with
  the options the probe stage takes from config (probe.score_*):
  ``default``: a default ProbeConfig's options, resolved as the probe stage
  resolves them (the token budget measured on this machine by
  lpjax.scoring.score.auto_token_budget, or read from the user cache; the
  seconds it took are reported apart; --fresh-tune measures again);
  ``fixed``: length-sorted batches of --batch-size, lengths rounded up to
  --multiple, chunked loss, full-length LM head;
  ``budget``: token-budget batches (rows x bucket length <= --budget; at
  128 records, 512 keeps padding under 10 %, larger budgets do on larger
  datasets);
  ``budget+resp``: and the LM head only at response positions;
  ``fast``: and the shared template prefixes (lpjax.data.batching.
  find_prefixes: the Alpaca template's two preambles), their keys/values
  computed once per pass (the parameters do not change within a pass).

Both sides count the same tokens: the records' prompt + response tokens,
padding excluded. tokens/s is the median over --repeats passes (lpjax's
first, compiling pass is reported apart). FLOP rates are given against the
fp32 matmul peak measured here at start and end (jnp.dot and torch.mm, 2048^2, the best):
"useful" counts what the method needs (same for all sides), "executed" what
the side computes (see bench/common.py). Exits 1 if any variant's
perplexities differ from the reference by a relative 1e-4 or more.
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
    p.add_argument("--repeats", type=int, default=2, help="timed passes per side (after lpjax's compiling pass)")
    p.add_argument("--models", default="smollm2,tiny", help="smollm2 and/or tiny (a random 2-layer Llama)")
    p.add_argument("--variants", default="default,fixed,fast",
                   help="lpjax variants: default,fixed,budget,budget+resp,fast; NAME:N uses a token budget of N")
    p.add_argument("--fresh-tune", action="store_true", help="default: measure the token budget again (no cache)")
    p.add_argument("--budget", type=int, default=512, help="token budget of a batch (rows x length)")
    p.add_argument("--batch-size", type=int, default=8, help="lpjax 'fixed' batch size")
    p.add_argument("--multiple", type=int, default=16, help="lpjax 'fixed' length multiple")
    p.add_argument("--torch-batch-size", type=int, default=4)
    p.add_argument("--tiny-dir", default="/tmp/lpjax_bench_tiny_llama")
    p.add_argument("--json", help="also write the results here")
    return p.parse_args()


ARGS = parse_args()
CPUS = common.setup_threads(ARGS.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from flax import nnx  # noqa: E402

from lpjax.config import ProbeConfig  # noqa: E402
from lpjax.data import batching  # noqa: E402
from lpjax.loss import perplexity  # noqa: E402
from lpjax.models.hf import load_hf  # noqa: E402
from lpjax.scoring.score import auto_token_budget, make_score_fn, plan_scoring, score_examples  # noqa: E402

torch.set_num_threads(ARGS.threads)

_PROBE = ProbeConfig()
VARIANTS = {
    # name: the lpjax.scoring options it turns on (the pipeline's probe.score_* fields)
    "default": {"token_budget": "auto", "response_head": _PROBE.score_response_head,
                "shared_prefix": _PROBE.score_shared_prefix},
    "fixed": {},
    "budget": {"token_budget": True},
    "budget+resp": {"token_budget": True, "response_head": True},
    "fast": {"token_budget": True, "response_head": True, "shared_prefix": True},
}


class LpjaxScorer:
    """One lpjax variant through lpjax.scoring.score.score_examples, the probe
    stage's own path (each pass plans its batches, finds the shared prefixes
    and computes their keys/values once, then runs the jitted loss)."""

    def __init__(self, variant: str, model, graphdef, params, examples, flops: common.LlamaFlops):
        self.params, self.examples = params, examples
        name, _, budget = variant.partition(":")
        opts = dict(VARIANTS[name])
        self.score_fn = make_score_fn(graphdef)
        tuned = {}
        if opts.get("token_budget") == "auto" and not budget:
            t0 = time.perf_counter()
            tuned = auto_token_budget(self.score_fn, params, model.cfg, examples, response_head=opts["response_head"],
                                      shared_prefix=opts["shared_prefix"], max_len=ARGS.max_len,
                                      use_cache=not ARGS.fresh_tune)
            tuned = {"tune_seconds": time.perf_counter() - t0, "token_budget": tuned["token_budget"],
                     "tune_source": tuned["source"], "tune_rates": tuned["rates"]}
            opts["token_budget"] = tuned["token_budget"]
            print(f"  default: token budget {tuned['token_budget']} ({tuned['tune_source']}, "
                  f"{tuned['tune_seconds']:.1f}s; tokens/s by budget "
                  f"{ {k: round(v) for k, v in tuned['tune_rates'].items()} })", flush=True)
        elif opts.pop("token_budget", False):
            opts["token_budget"] = int(budget) if budget else ARGS.budget
        self.options = dict(opts, max_len=ARGS.max_len)
        t0 = time.perf_counter()
        plan, prefixes = plan_scoring(examples, ARGS.batch_size, ARGS.multiple, **self.options)
        plan_s = time.perf_counter() - t0
        st = batching.plan_stats(examples, plan, prefixes)
        pmax = 0 if prefixes is None else int(prefixes.tokens.shape[1])
        executed = 0.0
        for b in plan:
            r, l = b.rows, b.length
            head_pos = b.resp_len if b.resp_len is not None else l
            executed += r * l * flops.per_token_layers + r * head_pos * flops.per_position_head
            executed += flops.attention(r * l, l + pmax)
        if pmax:  # once per pass, the real prefixes (row 0 is the empty one)
            kp = int(prefixes.tokens.shape[0])
            executed += (kp - 1) * pmax * flops.per_token_layers + flops.attention((kp - 1) * pmax, pmax)
        self.executed = executed
        self.stats = {"batches": st["batches"], "shapes": len(st["shapes"]), "padding_fraction": st["padding_fraction"],
                      "head_padding_fraction": st["head_padding_fraction"] if "response_head" in opts else None,
                      "prefix_tokens_skipped": st["prefix_tokens_skipped"],
                      "prefixes": None if prefixes is None else prefixes.lengths[1:].tolist(),
                      "plan_seconds": plan_s, **tuned}

    def run(self) -> np.ndarray:
        s, c = score_examples(self.score_fn, self.params, self.examples, ARGS.batch_size, ARGS.multiple,
                              **self.options)
        return perplexity(s, c)


class TorchScorer:
    """The reference: the authors' way of computing per-sample perplexities."""

    def __init__(self, ckpt: str, examples, pad_id: int, flops: common.LlamaFlops):
        from transformers import AutoModelForCausalLM

        self.model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32, local_files_only=True).eval()
        self.examples, self.pad_id = examples, pad_id
        bs = ARGS.torch_batch_size
        widths = [max(len(e.ids) for e in examples[i : i + bs]) for i in range(0, len(examples), bs)]
        rows = [len(examples[i : i + bs]) for i in range(0, len(examples), bs)]
        self.executed = sum(r * w * (flops.per_token_layers + flops.per_position_head) + flops.attention(r * w, w)
                            for r, w in zip(rows, widths))
        self.stats = {"batches": len(widths), "padding_fraction":
                      1 - sum(len(e.ids) for e in examples) / sum(r * w for r, w in zip(rows, widths))}

    def run(self) -> np.ndarray:
        return common.torch_response_ppl(self.model, self.examples, self.pad_id, ARGS.torch_batch_size)


def bench_model(name: str, ckpt: str, tokenizer, examples) -> dict:
    cfg = common.read_hf_config(ckpt)
    flops = common.LlamaFlops.from_hf(cfg)
    tokens = sum(len(ex.ids) for ex in examples)
    resp = [batching.response_positions(ex) for ex in examples]
    useful = flops.useful([len(ex.ids) for ex in examples], resp)
    model, _ = load_hf(ckpt, compute_dtype=ARGS.compute_dtype)
    graphdef, params = nnx.split(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    sides = {"torch": TorchScorer(ckpt, examples, pad, flops)}
    for v in ARGS.variants.split(","):
        sides[f"lpjax[{v}]"] = LpjaxScorer(v, model, graphdef, params, examples, flops)
    first, times, ppl = {}, {k: [] for k in sides}, {}
    for k, side in sides.items():  # compiling pass (lpjax) / warm-up pass (torch)
        t0 = time.perf_counter()
        ppl[k] = side.run()
        first[k] = time.perf_counter() - t0
        print(f"  [{name}] first pass {k}: {first[k]:.1f}s", flush=True)
    order = list(sides)
    for r in range(ARGS.repeats):
        for k in (order if r % 2 == 0 else order[::-1]):  # interleaved, alternating order
            t0 = time.perf_counter()
            out = sides[k].run()
            times[k].append(time.perf_counter() - t0)
            np.testing.assert_allclose(out, ppl[k], rtol=1e-5)  # passes agree with each other
            print(f"  [{name}] repeat {r} {k}: {times[k][-1]:.1f}s {tokens / times[k][-1]:.0f} tokens/s "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
    ref = ppl["torch"]
    results = {}
    for k, side in sides.items():
        med = float(np.median(times[k]))
        results[k] = {
            "seconds": times[k], "first_pass_seconds": first[k], "tokens_per_s": tokens / med,
            "tokens_per_s_best": tokens / min(times[k]),
            "useful_gflops": useful / med / 1e9, "executed_gflops": side.executed / med / 1e9,
            "max_rel_diff_ppl": float(np.max(np.abs(ppl[k] - ref) / np.abs(ref))),
            **side.stats,
        }
    for k in results:
        results[k]["speedup_vs_torch"] = results[k]["tokens_per_s"] / results["torch"]["tokens_per_s"]
    return {"model": name, "ckpt": ckpt, "examples": len(examples), "tokens": tokens,
            "response_positions": int(sum(resp)), "useful_gflop": useful / 1e9, "sides": results}


def print_report(info: dict, peak: dict, runs: list[dict]) -> None:
    print()
    common.print_machine(info, peak)
    for run in runs:
        print()
        print(f"{run['model']}: {run['examples']} records, {run['tokens']} tokens (prompt + response, no padding), "
              f"{run['response_positions']} response positions; useful work {run['useful_gflop']:.0f} GFLOP")
        rows = [common.RATE_HEADERS + ["padding", "max rel diff ppl", "first pass s"]]
        for k, r in run["sides"].items():
            rows.append(common.rate_cells(k, r) + [
                f"{100 * r['padding_fraction']:.1f}%", "-" if k == "torch" else f"{r['max_rel_diff_ppl']:.1e}",
                f"{r['first_pass_seconds']:.1f}"])
        print(common.fmt_table(rows))
        for k, r in run["sides"].items():
            extra = {x: r[x] for x in ("batches", "shapes", "head_padding_fraction", "prefix_tokens_skipped",
                                       "prefixes", "token_budget", "tune_source", "tune_seconds")
                     if r.get(x) is not None}
            print(f"  {k}: {extra}, seconds {[round(s, 1) for s in r['seconds']]}")


def main() -> int:
    info, peak, runs = common.run_models(ARGS, bench_model)
    print_report(info, peak, runs)
    if ARGS.json:
        with open(ARGS.json, "w") as f:
            json.dump({"machine": info, "peak": peak, "git": common.git_revision(), "args": vars(ARGS),
                       "runs": runs}, f, indent=2, default=str)
    worst = max(r["max_rel_diff_ppl"] for run in runs for k, r in run["sides"].items() if k != "torch")
    limit = common.tolerance(ARGS, 1e-4)
    print(f"\nmax relative ppl difference vs transformers: {worst:.2e} ({'OK' if worst < limit else 'FAIL'}: < {limit})"
          f" with lpjax compute dtype {ARGS.compute_dtype}")
    return 0 if worst < limit else 1


if __name__ == "__main__":
    sys.exit(main())
