"""Selection rules (pure numpy): global hardest-p %, the authors' per-cluster
chunk rule, the per-length-bin (stratified) rule, and the baselines (random,
clust_rand, full, longest, random_tokens).

Guards the field expects sit in ``build_subsets``: `exclude_hardest` leaves
the very hardest records out of the selection (mislabelled or unlearnable
ones rank there), `mix_random` swaps a share of the selection for random
records, and ``stratify="length"`` keeps the selection's response lengths
spread as the pool's are (hardness metrics tend to favour one end of the
length range). `longest` is the "Long Is More for Alignment" baseline (Zhao
et al. 2024) and `random_tokens` a random subset with the selection's token
budget instead of its count.

Every function returns int64 sample indices and is deterministic (ties are
broken by index, random draws are seeded with ``np.random.default_rng``).
All rules return sorted indices except the global one (``select_hardest``),
which lists the hardest first.
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
    return _global_rule(_as_metric(metric), percent, hard_is_low, None)


def _hardness_order(values: np.ndarray, hard_is_low: bool) -> np.ndarray:
    """All indices, hardest first; ties by index.

    Negating (instead of reversing an ascending sort) keeps the stable
    index-order tie-break when high values are the hard end.
    """
    return np.argsort(values if hard_is_low else -values, kind="stable").astype(np.int64)


def _global_rule(values: np.ndarray, percent: float, hard_is_low: bool, candidates: np.ndarray | None) -> np.ndarray:
    """The hardest num_selected(n, percent) candidates, hardest first.

    The count comes from the whole pool (n), so leaving candidates out
    (`exclude_hardest`) takes the next hardest instead of shrinking the
    selection; only when too few candidates remain is it cut short.
    """
    count = num_selected(values.shape[0], percent)
    order = _hardness_order(values, hard_is_low)
    if candidates is not None:
        order = order[candidates[order]]
    return order[:count]


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
        # NaN has no place in an order; refuse it instead of silently ranking it last.
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
    return _per_cluster_rule(values, labels, percent, part, hard_is_low, None)


def _per_cluster_rule(
    values: np.ndarray, labels: np.ndarray, percent: float, part: str, hard_is_low: bool,
    candidates: np.ndarray | None,
) -> np.ndarray:
    """The chunk rule on the candidates only (all samples when None): each
    cluster's remaining members are split into k chunks, k from `percent`."""
    k = chunks_for_percent(percent)
    j = _chunk_index(part, k)
    pool = np.arange(values.shape[0], dtype=np.int64) if candidates is None else np.flatnonzero(candidates)
    sub_values, sub_labels = values[pool], labels[pool]
    order, sizes = _cluster_groups(sub_labels, sub_values if hard_is_low else -sub_values)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    start, length = _chunk_bounds(sizes, k, j)
    picked = [order[o + s : o + s + n] for o, s, n in zip(offsets, start, length) if n]
    out = np.concatenate(picked) if picked else np.zeros(0, np.int64)
    return np.sort(pool[out]).astype(np.int64)


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


# ---------------------------------------------------------------------------
# Length: the "longest" baseline, a token-budget random baseline and strata.


def _as_amounts(values: np.ndarray, what: str, n: int | None = None) -> np.ndarray:
    """Validate one non-negative, finite number per sample (lengths, token counts)."""
    out = np.asarray(values)
    if out.ndim != 1 or (n is not None and out.shape[0] != n):
        raise ValueError(f"{what} must be 1-D with one value per sample ({n}), got shape {out.shape}")
    if out.dtype.kind not in "iuf" and out.size:
        raise ValueError(f"{what} must be numbers, got dtype {out.dtype}")
    out = out.astype(np.float64) if out.dtype.kind == "f" else out.astype(np.int64)
    if out.size and (not np.isfinite(out).all() or (out < 0).any()):
        raise ValueError(f"{what} must be finite and >= 0")
    return out


def select_longest(lengths: np.ndarray, count: int) -> np.ndarray:
    """The `count` samples with the longest responses, sorted int64 (ties: lower
    index first).

    "Long Is More for Alignment" (Zhao et al. 2024): picking the longest
    responses is a strong, metric-free baseline any hardness selection must beat.
    """
    values = _as_amounts(lengths, "lengths")
    if not 0 <= count <= values.shape[0]:
        raise ValueError(f"count must be in [0, n={values.shape[0]}], got {count}")
    return np.sort(np.argsort(-values, kind="stable")[:count]).astype(np.int64)


def select_random_tokens(tokens: np.ndarray, target_tokens: float, seed: int) -> np.ndarray:
    """Samples in the order of ``default_rng(seed).permutation(n)``, taken until
    their summed `tokens` first reaches `target_tokens` (the sample that crosses
    it is included; the whole pool if it holds fewer); sorted int64.

    A hardness selection tends to pick long samples, so a random subset of the
    same count trains on fewer tokens; this one matches the token budget instead.
    """
    values = _as_amounts(tokens, "tokens")
    n = values.shape[0]
    order = np.random.default_rng(seed).permutation(n)
    if target_tokens <= 0 or n == 0:
        return np.zeros(0, np.int64)
    total = np.cumsum(values[order])
    count = min(n, int(np.searchsorted(total, target_tokens, side="left")) + 1)
    return np.sort(order[:count]).astype(np.int64)


def length_strata(lengths: np.ndarray, bins: int) -> np.ndarray:
    """An int64 bin label per sample: min(bins, n) equal-count bins by rank of
    length (ties by index), 0 the shortest; bin sizes differ by at most one.

    Equal counts (not equal widths) so every bin weighs the same however
    skewed the length distribution is.
    """
    values = _as_amounts(lengths, "lengths")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    n = values.shape[0]
    labels = np.zeros(n, np.int64)
    if n == 0:
        return labels
    b = min(bins, n)
    base, extra = divmod(n, b)
    sizes = np.full(b, base, np.int64)
    sizes[:extra] += 1  # numpy.array_split's convention: the first bins are the larger
    labels[np.argsort(values, kind="stable")] = np.repeat(np.arange(b, dtype=np.int64), sizes)
    return labels


def stratum_counts(strata: np.ndarray, total: int) -> np.ndarray:
    """`total` split over the strata (ascending label order) in proportion to
    their sizes by the largest-remainder method; ties in the remainder go to
    the lower label. Integer arithmetic, so the split is exact."""
    _, sizes = np.unique(_as_clusters(strata), return_counts=True)
    n = int(sizes.sum())
    if not 0 <= total <= n:
        raise ValueError(f"total must be in [0, n={n}], got {total}")
    if n == 0:
        return sizes.astype(np.int64)
    floor, remainder = np.divmod(total * sizes.astype(np.int64), n)
    short = total - int(floor.sum())
    # lexsort's last key is the primary one: largest remainder first, then lowest label.
    floor[np.lexsort((np.arange(sizes.size), -remainder))[:short]] += 1
    return floor.astype(np.int64)


def select_stratified(
    metric: np.ndarray, strata: np.ndarray, percent: float, hard_is_low: bool = True
) -> np.ndarray:
    """The hardest num_selected(n, percent) samples, drawn from each stratum in
    proportion to its size (``stratum_counts``); sorted int64.

    With ``length_strata`` this is `select.stratify=length`: a metric that
    favours one length range can no longer fill the selection from it alone.
    """
    values = _as_metric(metric)
    labels = _as_clusters(strata, values.shape[0])
    return _stratified_rule(values, labels, percent, hard_is_low, None)


def _stratified_rule(
    values: np.ndarray, labels: np.ndarray, percent: float, hard_is_low: bool, candidates: np.ndarray | None
) -> np.ndarray:
    """Counts from the whole pool's strata; each stratum gives its hardest
    candidates (fewer if it has fewer left)."""
    counts = stratum_counts(labels, num_selected(values.shape[0], percent))
    order = _hardness_order(values, hard_is_low)
    if candidates is not None:
        order = order[candidates[order]]
    # Stable regrouping by stratum keeps each stratum hardest first.
    grouped = order[np.argsort(labels[order], kind="stable")]
    uniq, start = np.unique(labels[grouped], return_index=True)
    all_labels = np.unique(labels)
    want = dict(zip(all_labels.tolist(), counts.tolist()))
    stops = np.append(start[1:], grouped.size)
    picked = [grouped[s : min(e, s + want[u])] for u, s, e in zip(uniq.tolist(), start, stops)]
    out = np.concatenate(picked) if picked else np.zeros(0, np.int64)
    return np.sort(out).astype(np.int64)


# ---------------------------------------------------------------------------
# Guards and the subsets a run writes.


def _without_hardest(values: np.ndarray, hard_is_low: bool, exclude_hardest: float) -> np.ndarray | None:
    """Candidate mask leaving out the hardest round(n * exclude_hardest / 100)
    samples (global ranking, ties by index), or None when nothing is left out."""
    if not 0 <= exclude_hardest <= 100:
        raise ValueError(f"exclude_hardest must be in [0, 100], got {exclude_hardest}")
    n = values.shape[0]
    drop = round(n * exclude_hardest / 100)
    if drop == 0:
        return None
    candidates = np.ones(n, bool)
    candidates[_hardness_order(values, hard_is_low)[:drop]] = False
    return candidates


def _mix_random(
    values: np.ndarray, chosen: np.ndarray, hard_is_low: bool, mix_random: float, seed: int
) -> np.ndarray:
    """Replace r = round(m * mix_random / 100) of the m chosen samples: keep the
    m - r hardest, add r drawn with `seed` from the pool outside the selection;
    sorted. r is capped by what lies outside, so the count never changes."""
    if not 0 <= mix_random <= 100:
        raise ValueError(f"mix_random must be in [0, 100], got {mix_random}")
    m, n = len(chosen), values.shape[0]
    outside = np.setdiff1d(np.arange(n, dtype=np.int64), chosen)
    r = min(round(m * mix_random / 100), outside.size)
    if r == 0:
        return chosen
    ranked = np.sort(chosen)  # index order first, so the stable sort breaks ties by index
    key = values[ranked] if hard_is_low else -values[ranked]
    kept = ranked[np.argsort(key, kind="stable")[: m - r]]
    drawn = np.random.default_rng(seed).choice(outside, r, replace=False)
    return np.sort(np.concatenate([kept, drawn])).astype(np.int64)


STRATEGIES = ("hardest", "per_cluster", "stratified", "random", "clust_rand", "full", "longest", "random_tokens")
BASELINES = ("random", "clust_rand", "full", "longest", "random_tokens")
STRATIFY = ("none", "length")


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
    *,
    lengths: np.ndarray | None = None,
    tokens: np.ndarray | None = None,
    stratify: str = "none",
    length_bins: int = 10,
    exclude_hardest: float = 0.0,
    mix_random: float = 0.0,
) -> dict[str, np.ndarray]:
    """The metric's selection plus its baselines, as {subset name: indices}.

    The selection: without clusters the global hardest `percent` %
    (``select_hardest``, hardest first); with clusters the per-cluster chunk
    rule (``select_per_cluster``) for `part`; with ``stratify="length"`` the
    per-length-bin rule (``select_stratified`` over ``length_strata(lengths,
    length_bins)``; not with clusters).

    Guards (off by default): `exclude_hardest` % of the pool, the hardest by
    the metric, is left out of the selection only (mislabelled and
    unlearnable samples rank hardest); the rule then takes the next ones
    (counts from the whole pool). `mix_random` % of the selection is replaced
    by random samples from outside it (``_mix_random``).

    Baselines, computed from the final selection and drawn from the whole
    pool: `random` (the same count, `seed`), `clust_rand` (needs clusters; the
    same count per cluster, `seed`), `full`, `longest` (needs `lengths`; the
    same count of the longest responses) and `random_tokens` (needs `tokens`;
    random samples up to the selection's token total, `seed`).

    `exclude` (indices, e.g. the samples ``truncation="drop"`` flagged)
    takes samples out of the pool before anything is selected: every subset,
    `full` included, is then drawn from the rest, exactly as if the excluded
    samples were not in the data, and indices still refer to the full data.
    `clusters`, `lengths` and `tokens` are per sample of the full data.
    """
    values = _as_metric(metric)
    n = values.shape[0]
    if lengths is not None:
        lengths = _as_amounts(lengths, "lengths", n)
    if tokens is not None:
        tokens = _as_amounts(tokens, "tokens", n)
    if exclude is not None and len(exclude):
        keep = np.setdiff1d(np.arange(n), np.asarray(exclude, dtype=np.int64))
        if clusters is not None:
            clusters = _as_clusters(clusters, n)[keep]
        inner = build_subsets(
            values[keep], percent, hard_is_low, name, clusters, part, baselines, seed,
            lengths=None if lengths is None else lengths[keep], tokens=None if tokens is None else tokens[keep],
            stratify=stratify, length_bins=length_bins, exclude_hardest=exclude_hardest, mix_random=mix_random,
        )
        return {k: keep[v] for k, v in inner.items()}
    if name in baselines:
        raise ValueError(f"subset name {name!r} collides with a baseline")
    if stratify not in STRATIFY:
        raise ValueError(f"unknown stratify {stratify!r}; known: {', '.join(STRATIFY)}")
    for baseline in baselines:
        if baseline not in BASELINES:
            raise ValueError(f"unknown baseline {baseline!r}; known: {', '.join(BASELINES)}")
    candidates = _without_hardest(values, hard_is_low, exclude_hardest)
    if stratify == "length":
        if clusters is not None:
            raise ValueError("stratify='length' cannot be combined with clusters (both group the pool)")
        if lengths is None:
            raise ValueError("stratify='length' needs lengths")
        if part != "low":
            raise ValueError(f"part {part!r} needs clusters; stratified selection only takes the hard end")
        chosen = _stratified_rule(values, length_strata(lengths, length_bins), percent, hard_is_low, candidates)
    elif clusters is None:
        if part != "low":
            raise ValueError(f"part {part!r} needs clusters; global selection only takes the hard end")
        chosen = _global_rule(values, percent, hard_is_low, candidates)
    else:
        clusters = _as_clusters(clusters, n)
        chosen = _per_cluster_rule(values, clusters, percent, part, hard_is_low, candidates)
    if mix_random:
        chosen = _mix_random(values, chosen, hard_is_low, mix_random, seed)
    subsets = {name: chosen}
    for baseline in baselines:
        if baseline == "random":
            subsets["random"] = select_random(n, len(chosen), seed)
        elif baseline == "clust_rand":
            if clusters is None:
                raise ValueError("baseline 'clust_rand' needs clusters")
            subsets["clust_rand"] = select_cluster_random(clusters, percent, seed, part)
        elif baseline == "full":
            subsets["full"] = select_full(n)
        elif baseline == "longest":
            if lengths is None:
                raise ValueError("baseline 'longest' needs lengths")
            subsets["longest"] = select_longest(lengths, len(chosen))
        elif baseline == "random_tokens":
            if tokens is None:
                raise ValueError("baseline 'random_tokens' needs tokens")
            subsets["random_tokens"] = select_random_tokens(tokens, tokens[chosen].sum(), seed)
    return subsets
