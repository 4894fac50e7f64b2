"""k-means in JAX for clustering sample embeddings (docs/method.md, Clusters: 1000
clusters for Alpaca-52K), built to scale to millions of rows.

- Init: greedy k-means++ (as scikit-learn's: each new center is the best of
  `2 + floor(ln k)` candidates drawn with probability proportional to the
  squared distance to the nearest center), seeded through jax.random.
- Lloyd iterations. Squared distances are ||x||^2 - 2 x.c + ||c||^2, computed
  one row batch at a time inside a lax.scan: no [N, k] matrix exists beyond
  one [batch_rows, k] block.
- A cluster left empty is re-seeded deterministically: the i-th empty cluster
  (in index order) moves to the i-th farthest point from its own center.
- Stops when no assignment changes, or when the total squared center shift
  is at most `tol * mean(var(x, axis=0))` (scikit-learn's tolerance), or
  after `iters` iterations. The returned assignments are always the nearest
  returned centroid of each row.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging


def _sq_dists(x: jax.Array, x_sq: jax.Array, c: jax.Array, c_sq: jax.Array) -> jax.Array:
    """[rows, k] squared distances, clamped at 0 (the expansion can dip below)."""
    d = x_sq[:, None] - 2.0 * (x @ c.T) + c_sq[None, :]
    return jnp.maximum(d, 0.0)


def _assign_scan(xb: jax.Array, xsq: jax.Array, valid: jax.Array, c: jax.Array):
    """Nearest centroid of every row, batch by batch.

    xb [nb, B, D], xsq/valid [nb, B]. Returns assignments [nb, B] int32,
    squared distances [nb, B] (0 on padding rows), per-cluster row sums [k, D]
    and counts [k] (padding excluded).
    """
    k = c.shape[0]
    c_sq = jnp.sum(c * c, axis=-1)

    def body(carry, batch):
        sums, counts = carry
        x, x_sq, ok = batch
        d = _sq_dists(x, x_sq, c, c_sq)
        a = jnp.argmin(d, axis=1).astype(jnp.int32)
        dmin = jnp.where(ok, jnp.min(d, axis=1), 0.0)
        w = ok.astype(x.dtype)
        sums = sums + jax.ops.segment_sum(x * w[:, None], a, num_segments=k)
        counts = counts + jax.ops.segment_sum(w, a, num_segments=k)
        return (sums, counts), (a, dmin)

    init = (jnp.zeros_like(c), jnp.zeros((k,), c.dtype))
    (sums, counts), (assign, dmin) = jax.lax.scan(body, init, (xb, xsq, valid))
    return assign, dmin, sums, counts


@jax.jit
def _assign(xb, xsq, valid, c):
    assign, dmin, _, _ = _assign_scan(xb, xsq, valid, c)
    return assign, dmin


@jax.jit
def _lloyd_step(xb, xsq, valid, c):
    """One assignment + update. Returns (new centroids, assignments [nb, B],
    inertia, total squared center shift, number of empty clusters)."""
    k, dim = c.shape
    assign, dmin, sums, counts = _assign_scan(xb, xsq, valid, c)
    empty = counts == 0
    new_c = jnp.where(empty[:, None], c, sums / jnp.maximum(counts, 1.0)[:, None])

    def reseed(new_c):
        # The farthest rows from their centers, farthest first (padding has
        # distance 0 and ranks last; k <= N so there are enough real rows).
        _, far = jax.lax.top_k(dmin.reshape(-1), k)
        rank = jnp.cumsum(empty) - 1
        points = xb.reshape(-1, dim)[far[jnp.clip(rank, 0, k - 1)]]
        return jnp.where(empty[:, None], points, new_c)

    n_empty = jnp.sum(empty)
    new_c = jax.lax.cond(n_empty > 0, reseed, lambda c_: c_, new_c)
    shift = jnp.sum(jnp.square(new_c - c))
    return new_c, assign, jnp.sum(dmin), shift, n_empty


@functools.partial(jax.jit, static_argnames=("k", "n_trials", "n"))
def _kmeans_pp(xb, xsq, valid, key, k: int, n_trials: int, n: int):
    """Greedy k-means++ centers [k, D]. Rows n.. of the flattened xb are padding."""
    nb, b, dim = xb.shape
    flat = xb.reshape(-1, dim)
    key, first_key = jax.random.split(key)
    first = flat[jax.random.randint(first_key, (), 0, n)]

    def dists_to(points):  # [L, D] -> [nb, B, L], 0 on padding
        p_sq = jnp.sum(points * points, axis=-1)
        d = jax.lax.map(lambda xs: _sq_dists(xs[0], xs[1], points, p_sq), (xb, xsq))
        return jnp.where(valid[..., None], d, 0.0)

    closest = dists_to(first[None])[..., 0]
    centers = jnp.zeros((k, dim), xb.dtype).at[0].set(first)

    def body(i, state):
        centers, closest, key = state
        key, sub = jax.random.split(key)
        weights = closest.reshape(-1)
        cum = jnp.cumsum(weights)
        u = jax.random.uniform(sub, (n_trials,)) * cum[-1]
        # First row whose cumulative weight exceeds u: rows of weight 0 (chosen
        # centers, duplicates, padding) are never drawn.
        idx = jnp.clip(jnp.searchsorted(cum, u, side="right"), 0, n - 1)
        cand = flat[idx]
        trial = jnp.minimum(closest[..., None], dists_to(cand))  # [nb, B, L]
        best = jnp.argmin(jnp.sum(trial, axis=(0, 1)))
        return centers.at[i].set(cand[best]), trial[..., best], key

    centers, _, _ = jax.lax.fori_loop(1, k, body, (centers, closest, key))
    return centers


def _batched(x: np.ndarray, batch_rows: int):
    """x [N, D] -> device arrays xb [nb, B, D], ||x||^2 and validity [nb, B]."""
    n, dim = x.shape
    b = max(1, min(batch_rows, n))
    nb = -(-n // b)
    xb = jnp.pad(jnp.asarray(x), ((0, nb * b - n), (0, 0))).reshape(nb, b, dim)
    valid = (jnp.arange(nb * b) < n).reshape(nb, b)
    return xb, jnp.sum(xb * xb, axis=-1), valid


def _as_matrix(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty [N, D] matrix, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x has non-finite values")
    return x


def assign_clusters(x: np.ndarray, centroids: np.ndarray, batch_rows: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of every row: (assignments int32 [N], squared distances float32 [N])."""
    x = _as_matrix(x)
    n = x.shape[0]
    xb, xsq, valid = _batched(x, batch_rows)
    assign, dmin = _assign(xb, xsq, valid, jnp.asarray(centroids, jnp.float32))
    return np.asarray(assign).reshape(-1)[:n], np.asarray(dmin).reshape(-1)[:n]


def kmeans(x: np.ndarray, k: int, seed: int, iters: int = 100, tol: float = 1e-4,
           batch_rows: int = 65536, *, n_trials: int | None = None,
           init: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cluster the rows of x [N, D] into k clusters.

    Returns (assignments int32 [N], centroids float32 [k, D]). Deterministic
    for a given seed (and batch_rows) on a given backend. `n_trials` is the
    number of k-means++ candidates per center (default 2 + floor(ln k));
    `init` [k, D] replaces k-means++ with given starting centroids.
    """
    x = _as_matrix(x)
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, N={n}], got {k}")
    if iters < 0 or tol < 0 or batch_rows < 1:
        raise ValueError("iters and tol must be >= 0 and batch_rows >= 1")
    n_trials = n_trials or 2 + int(math.log(k))
    xb, xsq, valid = _batched(x, batch_rows)
    tol_abs = tol * float(np.mean(np.var(x, axis=0, dtype=np.float64)))

    if init is None:
        c = _kmeans_pp(xb, xsq, valid, jax.random.key(seed), k=k, n_trials=n_trials, n=n)
    else:
        c = jnp.asarray(init, jnp.float32)
        if c.shape != (k, x.shape[1]):
            raise ValueError(f"init has shape {c.shape}, expected {(k, x.shape[1])}")
    prev = None
    for it in range(iters):
        new_c, assign, inertia, shift, n_empty = _lloyd_step(xb, xsq, valid, c)
        if prev is not None and int(n_empty) == 0 and bool(jnp.array_equal(assign, prev)):
            # Same assignments as last step: the update moved nothing, keep c.
            logging.info("kmeans: converged (no assignment changed) after %d iterations", it + 1)
            break
        c, prev = new_c, assign
        logging.log_every_n(logging.INFO, "kmeans iter %d: inertia %.6g shift %.3g empty %d", 10,
                            it + 1, float(inertia), float(shift), int(n_empty))
        if float(shift) <= tol_abs and int(n_empty) == 0:
            logging.info("kmeans: converged (center shift %.3g <= %.3g) after %d iterations",
                         float(shift), tol_abs, it + 1)
            break
    assign, _ = _assign(xb, xsq, valid, c)
    return np.asarray(assign).reshape(-1)[:n], np.asarray(c)
