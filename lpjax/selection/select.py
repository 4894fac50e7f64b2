"""Selection rules (pure numpy): global hardest-p %, the authors' per-cluster
chunk rule, and the baselines (random, clust_rand, full).

Every function returns int64 sample indices and is deterministic (ties are
broken by index, random draws are seeded).
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


# ---------------------------------------------------------------------------
# Per-cluster selection: the authors' chunk rule (docs/method.md).

PARTS = ("low", "mid", "high")


def chunks_for_percent(percent: float) -> int:
    """k = round(100 / percent), the number of chunks each cluster is split into.

    Python's round (half to even): 1 % -> 100, 3 % -> 33, 5 % -> 20, 10 % -> 10,
    25 % -> 4, 33 % -> 3, 40 % -> 2 (2.5 rounds to 2), 100 % -> 1.
    """
    if not 0 < percent <= 100:
        raise ValueError(f"percent must be in (0, 100], got {percent}")
    return max(1, round(100 / percent))


def _chunk_index(part: str, k: int) -> int:
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; expected one of {PARTS}")
    return {"low": 0, "mid": k // 2, "high": k - 1}[part]


def _chunk_bounds(sizes: np.ndarray, k: int, j: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and length of chunk j of numpy.array_split(range(n), k) for each n in sizes.

    array_split gives the first n % k chunks n // k + 1 items and the others
    n // k, so chunk j starts at j * (n // k) + min(j, n % k).
    """
    base, extra = np.divmod(sizes, k)
    start = j * base + np.minimum(j, extra)
    length = base + (j < extra)
    return start, length


def _as_metric(metric: np.ndarray) -> np.ndarray:
    values = np.asarray(metric, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"metric must be 1-D, got shape {values.shape}")
    if np.isnan(values).any():
        raise ValueError("metric contains NaN")
    return values


def _as_clusters(clusters: np.ndarray, n: int | None = None) -> np.ndarray:
    """Validate one integer cluster label per sample (any ints; need not be contiguous)."""
    labels = np.asarray(clusters)
    if labels.ndim != 1 or (n is not None and labels.shape[0] != n):
        raise ValueError(f"clusters must be 1-D with one label per sample ({n}), got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"cluster labels must be integers, got dtype {labels.dtype}")
    return labels


def _cluster_groups(labels: np.ndarray, key: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(order, sizes): sample indices grouped by ascending cluster label, each
    group sorted ascending by `key` with ties in index order, and group sizes.

    np.lexsort is stable, so equal (label, key) pairs stay in index order;
    with key None each group is in index order.
    """
    order = np.lexsort((labels,) if key is None else (key, labels))
    _, sizes = np.unique(labels, return_counts=True)
    return order, sizes


def per_cluster_counts(clusters: np.ndarray, percent: float, part: str = "low") -> np.ndarray:
    """How many samples the chunk rule takes from each cluster (ascending label order)."""
    _, sizes = np.unique(_as_clusters(clusters), return_counts=True)
    k = chunks_for_percent(percent)
    return _chunk_bounds(sizes, k, _chunk_index(part, k))[1]


def select_per_cluster(
    metric: np.ndarray, clusters: np.ndarray, percent: float, part: str = "low", hard_is_low: bool = True
) -> np.ndarray:
    """The authors' per-cluster rule; sorted int64 indices.

    With k = round(100 / percent), every cluster's samples are sorted by the
    metric (stable: ties keep index order) and split with
    ``numpy.array_split(sorted_indices, k)``; chunk 0 (`low`), k // 2 (`mid`)
    or k - 1 (`high`) is kept. `low` takes ceil(n_c / k) samples of every
    cluster, so each non-empty cluster gives at least one.

    `low` always means the hard end: for metrics where low values are hard
    (LP, LP_app) each cluster is sorted ascending, as in the authors' code;
    where high values are hard (P0, IFD; ``hard_is_low=False``) it is sorted
    descending (by the negated metric, so ties still keep index order).
    """
    values = _as_metric(metric)
    labels = _as_clusters(clusters, values.shape[0])
    k = chunks_for_percent(percent)
    j = _chunk_index(part, k)
    order, sizes = _cluster_groups(labels, values if hard_is_low else -values)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    start, length = _chunk_bounds(sizes, k, j)
    picked = [order[o + s : o + s + n] for o, s, n in zip(offsets, start, length) if n]
    out = np.concatenate(picked) if picked else np.zeros(0, np.int64)
    return np.sort(out).astype(np.int64)


def select_cluster_random(clusters: np.ndarray, percent: float, seed: int = 42, part: str = "low") -> np.ndarray:
    """`clust_rand`: from every cluster, as many samples as the chunk rule takes
    (for `part`), drawn uniformly at random without replacement; sorted int64.

    Clusters are visited in ascending label order and one numpy Generator
    (``default_rng(seed)``) draws ``choice(members, count, replace=False)`` from
    each cluster's members (in index order). The paper's seed is 42.
    """
    labels = _as_clusters(clusters)
    order, sizes = _cluster_groups(labels, None)
    counts = per_cluster_counts(labels, percent, part)
    rng = np.random.default_rng(seed)
    picked, offset = [], 0
    for size, count in zip(sizes, counts):
        members = order[offset : offset + size]
        offset += size
        if count:
            picked.append(rng.choice(members, count, replace=False))
    out = np.concatenate(picked) if picked else np.zeros(0, np.int64)
    return np.sort(out).astype(np.int64)


STRATEGIES = ("hardest", "per_cluster", "random", "clust_rand", "full")


def build_subsets(
    metric: np.ndarray,
    percent: float,
    hard_is_low: bool = True,
    name: str = "selected",
    clusters: np.ndarray | None = None,
    part: str = "low",
    baselines: tuple[str, ...] = ("random", "full"),
    seed: int = 42,
    exclude: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The metric's selection plus its baselines, as {subset name: indices}.

    Without clusters the selection is the global hardest `percent` %
    (``select_hardest``); with clusters it is the per-cluster chunk rule
    (``select_per_cluster``) for `part`. Baselines: `random` (the same count
    as the selection, drawn globally with `seed`), `clust_rand` (needs
    clusters; the same count per cluster, `seed`) and `full`.

    `exclude` (indices, e.g. the samples ``truncation="drop"`` flagged)
    takes samples out of the pool before anything is selected: every subset,
    `full` included, is then drawn from the rest, exactly as if the excluded
    samples were not in the data, and indices still refer to the full data.
    """
    values = _as_metric(metric)
    n = values.shape[0]
    if exclude is not None and len(exclude):
        keep = np.setdiff1d(np.arange(n), np.asarray(exclude, dtype=np.int64))
        if clusters is not None:
            clusters = _as_clusters(clusters, n)[keep]
        inner = build_subsets(values[keep], percent, hard_is_low, name, clusters, part, baselines, seed)
        return {k: keep[v] for k, v in inner.items()}
    if name in baselines:
        raise ValueError(f"subset name {name!r} collides with a baseline")
    if clusters is None:
        if part != "low":
            raise ValueError(f"part {part!r} needs clusters; global selection only takes the hard end")
        chosen = select_hardest(values, percent, hard_is_low)
    else:
        chosen = select_per_cluster(values, clusters, percent, part, hard_is_low)
    subsets = {name: chosen}
    for baseline in baselines:
        if baseline == "random":
            subsets["random"] = select_random(n, len(chosen), seed)
        elif baseline == "clust_rand":
            if clusters is None:
                raise ValueError("baseline 'clust_rand' needs clusters")
            subsets["clust_rand"] = select_cluster_random(_as_clusters(clusters, n), percent, seed, part)
        elif baseline == "full":
            subsets["full"] = select_full(n)
        else:
            raise ValueError(f"unknown baseline {baseline!r}; known: random, clust_rand, full")
    return subsets
