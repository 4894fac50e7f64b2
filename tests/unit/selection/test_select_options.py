"""The baselines and guards next to the paper's rule (lpjax/selection/select.py):
longest, random_tokens, length strata, the stratified rule, exclude_hardest
and mix_random. Expectations are worked out by hand in the comments or by a
plain-Python re-implementation here, never by the function under test."""

from fractions import Fraction

import numpy as np
import pytest

from lpjax.selection.select import (
    build_subsets, length_strata, select_longest, select_random_tokens, select_stratified,
)

# ---------------------------------------------------------------------------
# select_longest


def test_select_longest_ties_go_to_the_lower_index():
    lengths = np.array([5, 9, 7, 9, 1, 7])
    # Descending: 9 (1), 9 (3), 7 (2), 7 (5), 5 (0), 1 (4).
    assert select_longest(lengths, 2).tolist() == [1, 3]
    assert select_longest(lengths, 3).tolist() == [1, 2, 3]  # 7 at 2 beats 7 at 5
    assert select_longest(lengths, 4).tolist() == [1, 2, 3, 5]
    assert select_longest(lengths, 0).tolist() == []
    out = select_longest(np.array([3, 3, 3, 1]), 2)
    assert out.dtype == np.int64 and out.tolist() == [0, 1]
    with pytest.raises(ValueError, match="count"):
        select_longest(lengths, 7)


# ---------------------------------------------------------------------------
# select_random_tokens


def reference_random_tokens(tokens, target, seed):
    """Walk the seeded permutation, adding records until the sum reaches target."""
    taken, total = [], 0
    for i in np.random.default_rng(seed).permutation(len(tokens)).tolist():
        if total >= target:
            break
        taken.append(i)
        total += tokens[i]
    return sorted(taken)


def test_select_random_tokens_includes_the_crossing_record():
    tokens = np.full(10, 10)
    # Equal tokens: 25 is first reached by the third record (10, 20, 30), 30 exactly
    # by the third too, 31 only by the fourth, whatever the permutation.
    assert len(select_random_tokens(tokens, 25, seed=0)) == 3
    assert len(select_random_tokens(tokens, 30, seed=0)) == 3
    assert len(select_random_tokens(tokens, 31, seed=0)) == 4
    assert select_random_tokens(tokens, 0, seed=0).tolist() == []


@pytest.mark.parametrize("seed", [0, 1, 7, 42])
@pytest.mark.parametrize("target", [1, 150, 151, 1000, 5499, 5500])
def test_select_random_tokens_exact_indices(seed, target):
    tokens = np.array([10, 200, 30, 400, 50, 600, 70, 800, 90, 1000, 5, 2245])  # sums to 5500
    out = select_random_tokens(tokens, target, seed)
    assert out.dtype == np.int64
    assert out.tolist() == reference_random_tokens(tokens.tolist(), target, seed)
    # The crossing record is in: the sum reaches the target (or the pool is exhausted).
    assert tokens[out].sum() >= target or len(out) == len(tokens)


def test_select_random_tokens_seeded_and_whole_pool_when_short():
    tokens = np.arange(1, 51)
    a = select_random_tokens(tokens, 300, seed=42)
    assert a.tolist() == select_random_tokens(tokens, 300, seed=42).tolist()
    assert a.tolist() != select_random_tokens(tokens, 300, seed=43).tolist()
    assert a.tolist() == sorted(set(a.tolist()))
    # The pool holds 1275 tokens: a larger target takes every record.
    assert select_random_tokens(tokens, 1275, seed=3).tolist() == list(range(50))
    assert select_random_tokens(tokens, 10**6, seed=3).tolist() == list(range(50))
    with pytest.raises(ValueError, match="tokens"):
        select_random_tokens(np.array([1, -2]), 1, seed=0)


# ---------------------------------------------------------------------------
# length_strata


def test_length_strata_ten_records_three_bins_with_ties():
    lengths = np.array([5, 1, 5, 3, 5, 2, 8, 5, 1, 9])
    # By (length, index): 1 (1), 1 (8), 2 (5), 3 (3) | 5 (0), 5 (2), 5 (4) | 5 (7), 8 (6), 9 (9).
    # Sizes 4, 3, 3 (the first bins take the extra); the tied 5s split by index.
    labels = length_strata(lengths, 3)
    assert labels.dtype == np.int64
    assert labels.tolist() == [1, 0, 1, 0, 1, 0, 2, 2, 0, 2]
    assert np.bincount(labels).tolist() == [4, 3, 3]


def test_length_strata_more_bins_than_records():
    # bins = min(5, 3): each record its own bin, by rank (tie 4, 4 by index).
    assert length_strata(np.array([4, 1, 4]), 5).tolist() == [1, 0, 2]
    assert length_strata(np.array([4, 1, 4]), 1).tolist() == [0, 0, 0]
    assert length_strata(np.zeros(0), 3).tolist() == []
    with pytest.raises(ValueError, match="bins"):
        length_strata(np.array([1, 2]), 0)


@pytest.mark.parametrize("n, bins", [(10, 3), (97, 10), (5, 5), (12, 4), (1, 10)])
def test_length_strata_sizes_differ_by_at_most_one(n, bins):
    rng = np.random.default_rng(n)
    labels = length_strata(rng.integers(0, 4, size=n), bins)  # heavy ties
    sizes = np.bincount(labels)
    assert len(sizes) == min(bins, n) and sizes.max() - sizes.min() <= 1


# ---------------------------------------------------------------------------
# select_stratified

STRATA = np.array([0, 1, 0, 2, 0, 1, 0, 2, 0, 1])  # sizes 5, 3, 2
METRIC = np.array([0.1, 0.6, 0.05, 0.9, 0.2, 0.5, 0.05, 0.8, 0.3, 0.5])


def test_stratified_takes_largest_remainder_counts_from_each_stratum():
    # Globally the 4 hardest (40 %) are 2, 6, 0, 4: all in stratum 0.
    # Quotas 4 * (5, 3, 2) / 10 = 2.0, 1.2, 0.8 -> floors 2, 1, 0, one left for the
    # largest remainder (0.8, stratum 2) -> counts 2, 1, 1.
    # Stratum 0: 0.05 (2), 0.05 (6); stratum 1: 0.5 (5, before 9); stratum 2: 0.8 (7).
    out = select_stratified(METRIC, STRATA, 40)
    assert out.dtype == np.int64 and out.tolist() == [2, 5, 6, 7]
    # High is hard: stratum 0: 0.3 (8), 0.2 (4); stratum 1: 0.6 (1); stratum 2: 0.9 (3).
    assert select_stratified(METRIC, STRATA, 40, hard_is_low=False).tolist() == [1, 3, 4, 8]


def test_stratified_remainder_ties_go_to_the_lower_label():
    # 50 % of 4 = 2; four strata of one: quotas 0.5 each, so the two lowest labels
    # (3 at index 1 and 5 at index 2) get the records.
    assert select_stratified(np.zeros(4), np.array([7, 3, 5, 9]), 50).tolist() == [1, 2]


def reference_stratified(metric, strata, percent, hard_is_low):
    """Largest remainder in exact fractions and a per-stratum sorted()."""
    n = len(metric)
    m = max(1, min(n, round(n * percent / 100)))
    labels = sorted(set(strata))
    members = {s: [i for i in range(n) if strata[i] == s] for s in labels}
    quota = {s: Fraction(m * len(members[s]), n) for s in labels}
    count = {s: int(quota[s]) for s in labels}
    by_remainder = sorted(labels, key=lambda s: (-(quota[s] - count[s]), s))
    for s in by_remainder[: m - sum(count.values())]:
        count[s] += 1
    sign = 1 if hard_is_low else -1
    chosen = []
    for s in labels:
        chosen += sorted(members[s], key=lambda i: (sign * metric[i], i))[: count[s]]
    return sorted(chosen)


@pytest.mark.parametrize("percent", [1, 5, 10, 33, 50, 100])
@pytest.mark.parametrize("hard_low", [True, False])
def test_stratified_matches_plain_reference(percent, hard_low):
    rng = np.random.default_rng(11)
    metric = rng.integers(0, 9, size=503) / 8  # heavy ties
    strata = rng.choice([-4, 0, 2, 3, 17], size=503, p=[0.5, 0.2, 0.15, 0.1, 0.05])
    out = select_stratified(metric, strata, percent, hard_is_low=hard_low)
    assert out.tolist() == reference_stratified(metric.tolist(), strata.tolist(), percent, hard_low)


# Length bins of LENGTHS: [1, 0, 1, 0, 1, 0, 2, 2, 0, 2] (see the length_strata test).
LENGTHS = np.array([5, 1, 5, 3, 5, 2, 8, 5, 1, 9])
# The short bin (1, 3, 5, 8) holds the hardest records.
SHORT_HARD = np.array([0.5, 0.0, 0.6, 0.1, 0.7, 0.2, 0.9, 0.8, 0.3, 0.95])


def test_build_subsets_stratify_length():
    # Globally 50 % = 5: 1, 3, 5, 8 (short bin) and 0. Bin sizes 4, 3, 3: quotas
    # 2.0, 1.5, 1.5 -> 2, 1, 1 and the remainder tie goes to bin 1 -> 2, 2, 1.
    # Bin 0: 0.0 (1), 0.1 (3); bin 1 (0, 2, 4): 0.5 (0), 0.6 (2); bin 2 (6, 7, 9): 0.8 (7).
    out = build_subsets(SHORT_HARD, 50, True, "m", baselines=(), lengths=LENGTHS, stratify="length", length_bins=3)
    assert out["m"].tolist() == [0, 1, 2, 3, 7]
    default = build_subsets(SHORT_HARD, 50, True, "m", baselines=(), lengths=LENGTHS)
    assert sorted(default["m"].tolist()) == [0, 1, 3, 5, 8]


# ---------------------------------------------------------------------------
# exclude_hardest

GLOBAL = np.array([0.3, -0.1, 0.3, 0.0, 0.5, -0.1, 0.2, 0.4, 0.1, 0.6])
# Ascending: -0.1 (1), -0.1 (5), 0.0 (3), 0.1 (8), 0.2 (6), 0.3 (0), 0.3 (2), 0.4 (7), 0.5 (4), 0.6 (9).


def test_exclude_hardest_global_skips_the_hardest_and_keeps_the_count():
    def sel(**kw):
        return sorted(build_subsets(GLOBAL, 30, baselines=(), **kw)["selected"].tolist())

    assert sel() == [1, 3, 5]
    # 20 % of 10 = 2 left out (1, 5); the next 3 are 3, 8, 6.
    assert sel(exclude_hardest=20) == [3, 6, 8]
    # 10 %: only 1 leaves (the -0.1 tie goes by index), so 5 stays.
    assert sel(exclude_hardest=10) == [3, 5, 8]
    # 4 % of 10 rounds to 0: nothing leaves.
    assert sel(exclude_hardest=4) == [1, 3, 5]
    # High is hard: descending 0.6 (9), 0.5 (4) leave; then 0.4 (7), 0.3 (0), 0.3 (2).
    out = build_subsets(GLOBAL, 30, False, baselines=(), exclude_hardest=20)["selected"]
    assert sorted(out.tolist()) == [0, 2, 7]


def test_exclude_hardest_leaves_the_baselines_alone():
    lengths = np.array([5, 9, 7, 9, 1, 7, 3, 2, 8, 4])
    base = ("random", "full", "longest", "random_tokens")
    plain = build_subsets(GLOBAL, 30, baselines=base, lengths=lengths, tokens=np.full(10, 10), seed=5)
    guarded = build_subsets(GLOBAL, 30, baselines=base, lengths=lengths, tokens=np.full(10, 10), seed=5,
                            exclude_hardest=20)
    assert plain["selected"].tolist() != guarded["selected"].tolist()
    for name in base:  # same count, same token total (equal tokens): same baselines
        assert guarded[name].tolist() == plain[name].tolist()
    # The random baseline may well contain the excluded hardest: it is drawn from the whole pool.
    assert guarded["random"].tolist() == sorted(np.random.default_rng(5).choice(10, 3, replace=False).tolist())


def test_exclude_hardest_per_cluster():
    metric = np.array([0.1, 0.5, 0.0, 0.3, 0.2, 0.9, 0.05, 0.7, 0.6, 0.8])
    clusters = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    # 50 % -> k = 2. Without the guard: cluster 0 sorted 2, 0, 4, 3, 1 -> first chunk of 3:
    # 2, 0, 4; cluster 1 sorted 6, 8, 7, 9, 5 -> 6, 8, 7.
    plain = build_subsets(metric, 50, clusters=clusters, baselines=("clust_rand",))
    assert plain["selected"].tolist() == [0, 2, 4, 6, 7, 8]
    # 20 % of 10: the 2 globally hardest (2: 0.0, 6: 0.05) leave. Remaining cluster 0:
    # 0, 4, 3, 1 -> 0, 4; cluster 1: 8, 7, 9, 5 -> 8, 7.
    guarded = build_subsets(metric, 50, clusters=clusters, baselines=("clust_rand",), exclude_hardest=20)
    assert guarded["selected"].tolist() == [0, 4, 7, 8]
    assert guarded["clust_rand"].tolist() == plain["clust_rand"].tolist()
    high = build_subsets(metric, 50, clusters=clusters, part="high", baselines=(), exclude_hardest=20)
    assert high["selected"].tolist() == [1, 3, 5, 9]  # last chunks: 3, 1 and 9, 5


def test_exclude_hardest_stratified():
    def sel(x):
        return build_subsets(SHORT_HARD, 50, baselines=(), lengths=LENGTHS, stratify="length", length_bins=3,
                             exclude_hardest=x)["selected"].tolist()

    # 20 %: 1 (0.0) and 3 (0.1) leave; counts stay 2, 2, 1 (whole pool):
    # bin 0 remaining 5 (0.2), 8 (0.3); bin 1: 0, 2; bin 2: 7.
    assert sel(20) == [0, 2, 5, 7, 8]
    # 40 %: the whole short bin leaves, so it gives nothing and the count falls short.
    assert sel(40) == [0, 2, 7]


# ---------------------------------------------------------------------------
# mix_random

MIX = np.array([(7 * i) % 20 for i in range(20)], dtype=np.float64)  # distinct, 0..19
HARDEST5 = [0, 3, 6, 9, 12]  # values 0, 1, 2, 3, 4 (7 * 3 = 21 -> 1, ...)


def test_mix_random_keeps_the_hardest_and_draws_the_rest_outside():
    assert sorted(MIX.argsort()[:5].tolist()) == HARDEST5
    plain = build_subsets(MIX, 25, baselines=("random",), seed=9)["selected"]
    assert sorted(plain.tolist()) == HARDEST5
    out = build_subsets(MIX, 25, baselines=("random",), seed=9, mix_random=40)
    mixed = out["selected"].tolist()
    # r = round(5 * 0.4) = 2: keep the 3 hardest (values 0, 1, 2 at 0, 3, 6), add 2 from outside.
    assert len(mixed) == 5 and mixed == sorted(mixed)
    assert {0, 3, 6} <= set(mixed)
    extra = sorted(set(mixed) - {0, 3, 6})
    assert len(extra) == 2 and not set(extra) & set(HARDEST5)
    outside = np.array(sorted(set(range(20)) - set(HARDEST5)))
    assert extra == sorted(np.random.default_rng(9).choice(outside, 2, replace=False).tolist())
    # Seeded; the random baseline keeps the selection's count.
    assert build_subsets(MIX, 25, seed=9, mix_random=40)["selected"].tolist() == mixed
    assert build_subsets(MIX, 25, seed=10, mix_random=40)["selected"].tolist() != mixed
    assert len(out["random"]) == 5


def test_mix_random_zero_and_hundred():
    plain = build_subsets(MIX, 25, baselines=())["selected"].tolist()
    assert build_subsets(MIX, 25, baselines=(), mix_random=0)["selected"].tolist() == plain
    every = build_subsets(MIX, 25, baselines=(), mix_random=100, seed=4)["selected"].tolist()
    assert len(every) == 5 and not set(every) & set(HARDEST5)
    # 50 % of 5 = 2.5 rounds half to even: 2 replaced, the 3 hardest kept.
    half = build_subsets(MIX, 25, baselines=(), mix_random=50, seed=4)["selected"].tolist()
    assert len(set(half) & set(HARDEST5)) == 3 and {0, 3, 6} <= set(half)


def test_mix_random_ties_and_direction():
    metric = np.array([0.0, 0.1, 0.1, 0.5, 0.6, 0.7, 0.8, 0.9])
    # 50 % of 8 = 4: 0, 1, 2, 3; r = 2: keep 0 and 1 (the 0.1 tie goes to index 1).
    out = build_subsets(metric, 50, baselines=(), mix_random=50, seed=1)["selected"].tolist()
    assert {0, 1} <= set(out) and len(set(out) & {2, 3}) == 0 and len(out) == 4
    # High is hard: 7, 6, 5, 4; keep 7, 6; add 2 from 0..3.
    out = build_subsets(metric, 50, False, baselines=(), mix_random=50, seed=1)["selected"].tolist()
    assert {6, 7} <= set(out) and len(set(out) & {0, 1, 2, 3}) == 2 and not set(out) & {4, 5}


# ---------------------------------------------------------------------------
# build_subsets: the length baselines, with and without exclude

B_METRIC = np.array([0.4, 0.1, 0.7, 0.2, 0.3, 0.0, 0.6, 0.5])
B_LENGTHS = np.array([50, 10, 80, 80, 20, 5, 60, 30])
B_TOKENS = B_LENGTHS + 100


def test_build_subsets_longest_and_random_tokens():
    out = build_subsets(B_METRIC, 25, True, "lp", baselines=("longest", "random_tokens", "random"), seed=2,
                        lengths=B_LENGTHS, tokens=B_TOKENS)
    assert list(out) == ["lp", "longest", "random_tokens", "random"]
    assert sorted(out["lp"].tolist()) == [1, 5]  # 0.0 (5), 0.1 (1)
    assert out["longest"].tolist() == [2, 3]  # the two 80s
    target = 110 + 105  # tokens of 1 and 5
    assert out["random_tokens"].tolist() == reference_random_tokens(B_TOKENS.tolist(), target, 2)


def test_build_subsets_length_baselines_with_exclude():
    excluded = [2, 5]
    keep = [0, 1, 3, 4, 6, 7]
    out = build_subsets(B_METRIC, 50, True, "lp", baselines=("longest", "random_tokens", "full"), seed=3,
                        exclude=excluded, lengths=B_LENGTHS, tokens=B_TOKENS)
    # Pool of 6, 50 % = 3: 0.1 (1), 0.2 (3), 0.3 (4).
    assert sorted(out["lp"].tolist()) == [1, 3, 4]
    # Longest 3 of the kept: 80 (3), 60 (6), 50 (0); the excluded 80 at 2 is out of reach.
    assert out["longest"].tolist() == [0, 3, 6]
    assert out["full"].tolist() == keep
    target = 110 + 180 + 120
    inner = reference_random_tokens(B_TOKENS[keep].tolist(), target, 3)
    assert out["random_tokens"].tolist() == [keep[i] for i in inner]
    for idx in out.values():
        assert not set(idx.tolist()) & set(excluded)


def test_exclude_combines_with_the_guards():
    rng = np.random.default_rng(8)
    n = 120
    metric = np.round(rng.normal(size=n), 1)
    lengths = rng.integers(0, 50, n)
    tokens = lengths + rng.integers(1, 30, n)
    excluded = np.sort(rng.choice(n, 17, replace=False))
    keep = np.setdiff1d(np.arange(n), excluded)
    kw = dict(baselines=("random", "longest", "random_tokens", "full"), seed=6, stratify="length", length_bins=4,
              exclude_hardest=5, mix_random=20)
    out = build_subsets(metric, 10, True, "lp", exclude=excluded, lengths=lengths, tokens=tokens, **kw)
    inner = build_subsets(metric[keep], 10, True, "lp", lengths=lengths[keep], tokens=tokens[keep], **kw)
    assert list(out) == list(inner)
    for name in out:
        assert out[name].tolist() == keep[inner[name]].tolist()
        assert not set(out[name].tolist()) & set(excluded.tolist())
    # Same count as 10 % of the kept 103 records.
    assert len(out["lp"]) == round(103 * 0.1) == len(out["longest"]) == len(out["random"])


# ---------------------------------------------------------------------------
# errors


def test_errors_name_what_is_missing():
    clusters = np.array([0, 0, 1, 1, 0, 1, 0, 1])
    with pytest.raises(ValueError, match="clusters"):
        build_subsets(B_METRIC, 50, clusters=clusters, lengths=B_LENGTHS, stratify="length")
    with pytest.raises(ValueError, match="random_tokens"):
        build_subsets(B_METRIC, 50, baselines=("random_tokens",), lengths=B_LENGTHS)
    with pytest.raises(ValueError, match="longest"):
        build_subsets(B_METRIC, 50, baselines=("longest",), tokens=B_TOKENS)
    with pytest.raises(ValueError, match="lengths"):
        build_subsets(B_METRIC, 50, stratify="length")
    with pytest.raises(ValueError, match="stratify"):
        build_subsets(B_METRIC, 50, stratify="width")
    with pytest.raises(ValueError, match="lengths"):
        build_subsets(B_METRIC, 50, lengths=B_LENGTHS[:5])
    with pytest.raises(ValueError, match="exclude_hardest"):
        build_subsets(B_METRIC, 50, exclude_hardest=-1)
    with pytest.raises(ValueError, match="mix_random"):
        build_subsets(B_METRIC, 50, mix_random=101)
