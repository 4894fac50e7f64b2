"""Shared pieces of the throughput benchmarks (bench/score.py, bench/train.py).

Both benches compare lpjax with the reference (transformers' PyTorch
LlamaForCausalLM, eager fp32, the way the authors' scripts use it) in the same
process, interleaved and repeated, because the machine these run on is shared
and its load moves while a bench runs.

- ``setup_threads`` must run before jax or torch is imported: it pins the
  process to N CPUs (XLA:CPU sizes its thread pool from the CPUs the process
  may run on; there is no XLA flag for the intra-op thread count) and sets
  torch's and OpenMP's thread counts to N.
- ``measure_peak``: the fp32 matmul peak of this machine with N threads, from
  a large jnp.dot and a torch.mm (the better of the two is "peak").
- FLOP counts (``LlamaFlops``) follow the usual 2 x multiply-adds:
  "useful" is what the method needs (every layer on every real token, causal
  attention, the LM head at the positions that predict a response token),
  the same figure for both sides; "executed" is what a side actually
  computes (padding, full logits for the reference, the prefix once per
  batch, attention over the whole padded square).
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
ALPACA = os.path.join(SHARED, "data", "alpaca_52k.json")
CONVERTER = os.path.join(SHARED, "tools", "smollm2_to_hf.py")
DEFAULT_CKPT = "/tmp/smollm2"


def base_parser(doc: str, num: int):
    """The arguments every bench takes: the checkpoint, the data, how many
    records, their max length and the thread count."""
    import argparse

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default=DEFAULT_CKPT, help="SmolLM2-135M-Instruct HF dir (converted if missing)")
    p.add_argument("--data", default=ALPACA)
    p.add_argument("--num", type=int, default=num)
    p.add_argument("--max-len", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compute-dtype", default="float32", choices=("float32", "bfloat16"),
                   help="lpjax's compute dtype (fp32 master weights either way; the reference stays fp32)")
    return p


def tolerance(args, fp32: float) -> float:
    """The agreement with the fp32 reference a run must reach: ``fp32``, or
    none to check with bf16 compute (its difference is what is measured)."""
    return fp32 if args.compute_dtype == "float32" else float("inf")


def setup_threads(threads: int) -> list[int]:
    """Pin this process to `threads` CPUs and cap every thread pool at that
    (call before importing jax/torch). Returns the CPUs used."""
    # The malloc setting `python -m lpjax.launch` runs with (huge pages for
    # XLA:CPU's step temporaries), for both sides: torch's eager allocations
    # gain from it too, so ratios here do not owe anything to it.
    from lpjax.launch import reexec_with_huge_pages

    reexec_with_huge_pages()
    cpus = sorted(os.sched_getaffinity(0))[:threads]
    os.sched_setaffinity(0, cpus)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    # One Eigen pool for XLA:CPU's matmuls, sized from the affinity mask above.
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=true").strip()
    return cpus


# The vector and matrix extensions that decide which matmul kernels XLA:CPU
# (Eigen, oneDNN, YNNPACK) and torch (MKL, oneDNN) can use.
VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
                "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16")


def machine_info(threads: int) -> dict:
    model, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "unknown":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    import jax

    try:  # bench/compile.py runs without torch
        import torch
    except ImportError:
        torch = None
    return {
        "processor": platform.processor() or platform.machine(),
        "cpu_model": model,
        "vector_extensions": [f for f in VECTOR_FLAGS if f in flags],
        "cores": os.cpu_count(),
        "threads": threads,
        "affinity": sorted(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads() if torch else None,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "jax": jax.__version__,
        "torch": torch.__version__ if torch else "not installed",
        "load_avg": os.getloadavg(),
    }


def git_revision() -> str:
    try:
        return subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except Exception:
        return "unknown"


def measure_peak(n: int = 2048, repeats: int = 5) -> dict:
    """fp32 matmul GFLOP/s of jnp.dot and torch.mm on [n, n] x [n, n], best of
    `repeats` (after a warm-up), interleaved."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), np.float32), rng.standard_normal((n, n), np.float32)
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    dot = jax.jit(jnp.dot)
    dot(ja, jb).block_until_ready()
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    torch.mm(ta, tb)
    best = {"jax": float("inf"), "torch": float("inf")}
    for _ in range(repeats):
        t0 = time.perf_counter()
        dot(ja, jb).block_until_ready()
        best["jax"] = min(best["jax"], time.perf_counter() - t0)
        t0 = time.perf_counter()
        torch.mm(ta, tb)
        best["torch"] = min(best["torch"], time.perf_counter() - t0)
    flops = 2.0 * n**3
    out = {f"{k}_gflops": flops / v / 1e9 for k, v in best.items()}
    out["peak_gflops"] = max(out.values())
    out["n"] = n
    return out


def remeasure_peak(start: dict) -> dict:
    """Measure the peak again at the end (the machine's load moves) and keep
    the better figure per library."""
    end = measure_peak(start["n"])
    out = {k: max(start[k], end[k]) for k in ("jax_gflops", "torch_gflops", "peak_gflops")}
    return {**out, "n": start["n"], "start": {k: v for k, v in start.items() if k != "start"}, "end": end}


def add_peak_fractions(run: dict, peak: float) -> None:
    for side in run["sides"].values():
        side["useful_fraction_of_peak"] = side["useful_gflops"] / peak
        side["executed_fraction_of_peak"] = side["executed_gflops"] / peak


@dataclasses.dataclass(frozen=True)
class LlamaFlops:
    """Forward FLOPs of a Llama-shaped decoder."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int

    @classmethod
    def from_hf(cls, cfg: dict) -> "LlamaFlops":
        heads = cfg["num_attention_heads"]
        return cls(cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], heads,
                   cfg.get("num_key_value_heads") or heads, cfg.get("head_dim") or cfg["hidden_size"] // heads,
                   cfg["vocab_size"])

    @property
    def per_token_layers(self) -> float:
        """Projections and MLP of all layers, per token."""
        h, d = self.hidden, self.head_dim
        proj = h * (self.heads + 2 * self.kv_heads) * d + self.heads * d * h
        return 2.0 * self.layers * (proj + 3 * h * self.intermediate)

    def attention(self, queries: float, keys_per_query: float) -> float:
        """QK^T and PV for `queries` queries attending `keys_per_query` keys each."""
        return 2.0 * 2 * self.layers * self.heads * self.head_dim * queries * keys_per_query

    @property
    def per_position_head(self) -> float:
        return 2.0 * self.hidden * self.vocab

    def useful(self, lengths: Sequence[int], response_positions: Sequence[int]) -> float:
        """Forward FLOPs the method needs on these examples (causal attention:
        token t attends t + 1 keys)."""
        total = 0.0
        for n, r in zip(lengths, response_positions):
            total += n * self.per_token_layers + self.attention(1, 1) * n * (n + 1) / 2 + r * self.per_position_head
        return total


def load_examples(tokenizer, path: str, num: int, max_len: int):
    from lpjax.data import formats, tokenize

    records = formats.load_records(path, "auto")[:num]
    return tokenize.encode_all(tokenizer, records, max_len, "alpaca")


def ensure_checkpoint(ckpt: str, converter: str = CONVERTER) -> str:
    """SmolLM2-135M-Instruct as a HF directory, converted on first use."""
    if os.path.isfile(os.path.join(ckpt, "config.json")):
        return ckpt
    if not os.path.isfile(converter):
        sys.exit(f"no checkpoint in {ckpt} and no converter at {converter}")
    print(f"converting SmolLM2-135M-Instruct into {ckpt} ...", flush=True)
    subprocess.run([sys.executable, converter, ckpt], check=True)
    return ckpt


def make_tiny_llama(out_dir: str, vocab: int, seed: int = 0) -> str:
    """A tiny random Llama (2 layers, hidden 64, GQA) with `vocab` tokens,
    saved with transformers' save_pretrained, so both sides load the same
    weights. The vocabulary is the real tokenizer's: the LM head dominates."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if os.path.isfile(os.path.join(out_dir, "config.json")):
        with open(os.path.join(out_dir, "config.json")) as f:
            if json.load(f).get("vocab_size") == vocab:
                return out_dir
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      tie_word_embeddings=True, rms_norm_eps=1e-5)
    LlamaForCausalLM(cfg).save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def read_hf_config(ckpt: str) -> dict:
    with open(os.path.join(ckpt, "config.json")) as f:
        return json.load(f)


def torch_batch(examples, pad_id: int):
    """The authors' collation: right-padded to the longest, attention mask,
    labels -100 on prompt and padding."""
    import torch

    width = max(len(ex.ids) for ex in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for row, ex in enumerate(examples):
        n = len(ex.ids)
        ids[row, :n] = torch.as_tensor(ex.ids, dtype=torch.long)
        mask[row, :n] = 1
        labels[row, ex.prompt_len : n] = ids[row, ex.prompt_len : n]
    return ids, mask, labels


def run_models(args, bench_model) -> tuple[dict, dict, list[dict]]:
    """Measure the peak, bench each of args.models ("smollm2", "tiny") with
    bench_model(name, ckpt, tokenizer, examples), remeasure the peak and add
    each side's fraction of it. Returns (machine info, peak, runs)."""
    from lpjax.data.tokenizer import load_tokenizer

    info = machine_info(args.threads)
    peak = measure_peak()
    print(f"peak at start: {peak}", flush=True)
    ckpt = ensure_checkpoint(args.ckpt)
    tokenizer = load_tokenizer(ckpt)
    examples = load_examples(tokenizer, args.data, args.num, args.max_len)
    runs = []
    for name in args.models.split(","):
        if name == "smollm2":
            path = ckpt
        elif name == "tiny":
            path = make_tiny_llama(args.tiny_dir, read_hf_config(ckpt)["vocab_size"])
        else:
            raise SystemExit(f"unknown model {name!r}")
        print(f"{name}: {path}", flush=True)
        runs.append(bench_model(name, path, tokenizer, examples))
    peak = remeasure_peak(peak)
    for run in runs:
        add_peak_fractions(run, peak["peak_gflops"])
    return info, peak, runs


def torch_response_ppl(model, examples, pad_id: int, batch_size: int):
    """Per-sample response perplexities the authors' way: transformers'
    model on batches in dataset order padded to the longest, full logits,
    CrossEntropy over the response tokens; ppl 1.0 without any (docs/method.md)."""
    import numpy as np
    import torch

    out = np.ones(len(examples))
    with torch.no_grad():
        for lo in range(0, len(examples), batch_size):
            chunk = examples[lo : lo + batch_size]
            ids, mask, labels = torch_batch(chunk, pad_id)
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
            shift_logits, shift_labels = logits[:, :-1], labels[:, 1:]
            token_loss = torch.nn.functional.cross_entropy(
                shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1), reduction="none",
                ignore_index=-100).view(shift_labels.shape)
            counted = (shift_labels != -100).float()
            n_tokens = counted.sum(-1)
            mean = (token_loss * counted).sum(-1) / n_tokens.clamp(min=1)
            out[lo : lo + len(chunk)] = torch.where(n_tokens > 0, mean.exp(), torch.ones_like(mean)).double().numpy()
    return out


def print_machine(info: dict, peak: dict | None = None) -> None:
    """The header every bench table is printed under (with the matmul peak
    where the bench measured it)."""
    print(f"machine: {info['processor']} / {info['cpu_model']} "
          f"[{' '.join(info.get('vector_extensions', [])) or 'extensions unknown'}] / {info['cores']} cores; "
          f"{info['threads']} threads "
          f"(affinity {info['affinity']}, torch {info['torch_threads']}, XLA_FLAGS '{info['xla_flags']}', "
          f"GLIBC_TUNABLES '{info.get('glibc_tunables', '')}'); "
          f"jax {info['jax']}, torch {info['torch']}")
    print(f"load average at start {tuple(round(x, 1) for x in info['load_avg'])}, at end "
          f"{tuple(round(x, 1) for x in os.getloadavg())}")
    if peak is None:
        return
    print(f"fp32 matmul peak ({peak['n']}^2, best of start and end): jnp.dot {peak['jax_gflops']:.1f} GFLOP/s, "
          f"torch.mm {peak['torch_gflops']:.1f} GFLOP/s -> peak {peak['peak_gflops']:.1f} GFLOP/s "
          f"(at start {peak['start']['peak_gflops']:.1f})")


RATE_HEADERS = ["side", "tokens/s (median)", "vs torch", "useful GFLOP/s", "useful % peak", "executed GFLOP/s",
                "executed % peak"]


def rate_cells(name: str, r: dict) -> list[str]:
    """The RATE_HEADERS columns of one side's results."""
    return [name, f"{r['tokens_per_s']:.0f}", f"{r['speedup_vs_torch']:.2f}x", f"{r['useful_gflops']:.1f}",
            f"{100 * r['useful_fraction_of_peak']:.0f}%", f"{r['executed_gflops']:.1f}",
            f"{100 * r['executed_fraction_of_peak']:.0f}%"]


def fmt_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(rows[0]), sep] + [line(r) for r in rows[1:]])
