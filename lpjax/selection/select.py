"""Global selection rules (pure numpy): hardest-p %, random, full.

Per-cluster selection lives elsewhere; these are the building blocks and the
baselines.
"""

import numpy as np


def num_selected(n: int, percent: float) -> int:
    """round(n * percent / 100), but at least 1.

    Python's round (half to even) is used. The floor of 1 keeps a tiny pool or
    a tiny percentage from producing an empty training set, which no caller
    ever wants; n == 0 still gives 0 since nothing can be selected.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0 < percent <= 100:
        raise ValueError(f"percent must be in (0, 100], got {percent}")
    if n == 0:
        return 0
    return max(1, min(n, round(n * percent / 100)))


def select_hardest(metric: np.ndarray, percent: float, hard_is_low: bool = True) -> np.ndarray:
    """Indices of the `percent` % hardest samples, hardest first (int64).

    Ties are broken by index (lower index first) in both directions, so the
    result does not depend on the sort algorithm or platform.
    """
    values = np.asarray(metric, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"metric must be 1-D, got shape {values.shape}")
    if np.isnan(values).any():
        # NaN has no place in an order; refuse it instead of silently ranking it last.
        raise ValueError("metric contains NaN")
    count = num_selected(values.shape[0], percent)
    # Negating (instead of reversing an ascending sort) keeps the stable
    # index-order tie-break when high values are the hard end.
    key = values if hard_is_low else -values
    order = np.argsort(key, kind="stable")
    return order[:count].astype(np.int64)


def select_random(n: int, count: int, seed: int) -> np.ndarray:
    """`count` distinct indices out of range(n), sorted, reproducible by seed."""
    if not 0 <= count <= n:
        raise ValueError(f"count must be in [0, n={n}], got {count}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, count, replace=False)).astype(np.int64)


def select_full(n: int) -> np.ndarray:
    """All indices: the full-data baseline."""
    return np.arange(n, dtype=np.int64)
