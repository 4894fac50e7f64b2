"""Per-cluster selection against an independent plain-loop implementation of
the authors' chunk rule (docs/method.md), plus the baselines built on it."""

import math
from collections import Counter

import numpy as np
import pytest

from lpjax.selection.select import (
    build_subsets, chunks_for_percent, per_cluster_counts, select_cluster_random, select_per_cluster,
)

PERCENTS = [1, 3, 5, 10, 25, 33]


def reference_rule(metric, clusters, percent, part, hard_is_low):
    """The rule written out with loops: k = round(100 / p); per cluster, sort
    (stable, index order first) and keep one chunk of numpy.array_split."""
    k = round(100 / percent)
    j = {"low": 0, "mid": k // 2, "high": k - 1}[part]
    chosen = []
    for label in sorted(set(clusters.tolist())):
        members = [i for i in range(len(metric)) if clusters[i] == label]
        sign = 1.0 if hard_is_low else -1.0
        ordered = sorted(members, key=lambda i: sign * metric[i])  # sorted() is stable
        chosen.extend(int(i) for i in np.array_split(np.array(ordered, dtype=np.int64), k)[j])
    return sorted(chosen)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    sizes = [1, 1, 1, 2, 3, 5, 7, 33, 34, 99, 100, 101, 250]
    sizes += rng.integers(1, 120, size=50 - len(sizes)).tolist()
    # Non-contiguous labels, shuffled membership.
    labels = np.repeat(rng.permutation(500)[:50] * 3 - 40, sizes)
    labels = labels[rng.permutation(labels.size)]
    metric = np.round(rng.normal(size=labels.size), 1)  # rounding makes many ties
    metric[:20] = 0.0
    return metric, labels


@pytest.mark.parametrize("percent", PERCENTS)
@pytest.mark.parametrize("part", ["low", "mid", "high"])
@pytest.mark.parametrize("hard_low", [True, False])
def test_matches_plain_loop_reference(data, percent, part, hard_low):
    metric, labels = data
    out = select_per_cluster(metric, labels, percent, part, hard_is_low=hard_low)
    assert out.dtype == np.int64
    assert out.tolist() == reference_rule(metric, labels, percent, part, hard_low)


@pytest.mark.parametrize("percent", PERCENTS)
def test_low_takes_ceil_of_each_cluster(data, percent):
    metric, labels = data
    k = round(100 / percent)
    _, sizes = np.unique(labels, return_counts=True)
    expected = [math.ceil(n / k) for n in sizes]
    assert per_cluster_counts(labels, percent).tolist() == expected
    assert len(select_per_cluster(metric, labels, percent)) == sum(expected)


def test_low_is_the_hard_end_in_both_directions():
    metric = np.array([0.5, 0.1, 0.9, 0.3, 0.7, 0.2])
    labels = np.array([0, 0, 0, 1, 1, 1])
    # k = 3 (33 %): one sample per cluster and part.
    assert select_per_cluster(metric, labels, 33, "low").tolist() == [1, 5]
    assert select_per_cluster(metric, labels, 33, "high").tolist() == [2, 4]
    assert select_per_cluster(metric, labels, 33, "mid").tolist() == [0, 3]
    assert select_per_cluster(metric, labels, 33, "low", hard_is_low=False).tolist() == [2, 4]
    assert select_per_cluster(metric, labels, 33, "high", hard_is_low=False).tolist() == [1, 5]


def test_ties_keep_index_order_in_both_directions():
    metric = np.zeros(6)
    labels = np.zeros(6, dtype=np.int64)
    assert select_per_cluster(metric, labels, 50).tolist() == [0, 1, 2]
    assert select_per_cluster(metric, labels, 50, hard_is_low=False).tolist() == [0, 1, 2]
    assert select_per_cluster(metric, labels, 50, "high").tolist() == [3, 4, 5]


def test_alpaca_sized_one_percent_gives_sum_of_ceilings():
    rng = np.random.default_rng(0)
    n, n_clusters = 52002, 1000
    # Skewed cluster sizes, every cluster non-empty.
    labels = np.concatenate([np.arange(n_clusters), rng.zipf(1.3, n - n_clusters) % n_clusters])
    metric = rng.uniform(-1, 1, n)
    _, sizes = np.unique(labels, return_counts=True)
    assert len(sizes) == n_clusters
    out = select_per_cluster(metric, labels, 1)
    assert len(out) == sum(math.ceil(s / 100) for s in sizes) > 1000
    assert len(set(out.tolist())) == len(out)
    # Every cluster gives at least one sample.
    assert len(np.unique(labels[out])) == n_clusters


def test_chunks_for_percent():
    assert [chunks_for_percent(p) for p in [1, 3, 5, 10, 25, 33, 40, 50, 100]] == [100, 33, 20, 10, 4, 3, 2, 2, 1]
    assert chunks_for_percent(0.1) == 1000
    for bad in [0, -5, 101]:
        with pytest.raises(ValueError, match="percent"):
            chunks_for_percent(bad)


def test_hundred_percent_takes_everything(data):
    metric, labels = data
    assert select_per_cluster(metric, labels, 100).tolist() == list(range(len(metric)))


def test_bad_inputs():
    with pytest.raises(ValueError, match="part"):
        select_per_cluster(np.zeros(3), np.zeros(3, int), 10, part="top")
    with pytest.raises(ValueError, match="one label per sample"):
        select_per_cluster(np.zeros(3), np.zeros(2, int), 10)
    with pytest.raises(ValueError, match="integers"):
        select_per_cluster(np.zeros(3), np.zeros(3), 10)
    with pytest.raises(ValueError, match="NaN"):
        select_per_cluster(np.array([0.0, np.nan]), np.zeros(2, int), 10)


def test_clust_rand_same_counts_per_cluster_and_seeded(data):
    metric, labels = data
    for percent in PERCENTS:
        for part in ["low", "mid", "high"]:
            chosen = select_per_cluster(metric, labels, percent, part)
            rand = select_cluster_random(labels, percent, seed=42, part=part)
            assert Counter(labels[rand].tolist()) == Counter(labels[chosen].tolist())
    a = select_cluster_random(labels, 10)
    assert a.tolist() == select_cluster_random(labels, 10, seed=42).tolist()
    assert a.tolist() != select_cluster_random(labels, 10, seed=1).tolist()
    assert a.dtype == np.int64 and a.tolist() == sorted(set(a.tolist()))


def test_clust_rand_documented_draw():
    labels = np.array([5, 2, 5, 2, 5, 9])
    # Clusters in label order 2, 5, 9; members in index order; one generator.
    rng = np.random.default_rng(3)
    expected = sorted([*rng.choice([1, 3], 1, replace=False), *rng.choice([0, 2, 4], 2, replace=False),
                       *rng.choice([5], 1, replace=False)])
    assert select_cluster_random(labels, 50, seed=3).tolist() == expected


def test_build_subsets(data):
    metric, labels = data
    out = build_subsets(metric, 10, True, "lp1", baselines=("random", "full"), seed=3)
    assert list(out) == ["lp1", "random", "full"]
    assert len(out["random"]) == len(out["lp1"]) and len(out["full"]) == len(metric)
    clustered = build_subsets(metric, 10, False, "ifd", clusters=labels, baselines=("clust_rand", "random"))
    assert clustered["ifd"].tolist() == select_per_cluster(metric, labels, 10, hard_is_low=False).tolist()
    assert clustered["clust_rand"].tolist() == select_cluster_random(labels, 10, 42).tolist()
    assert len(clustered["random"]) == len(clustered["ifd"])
    with pytest.raises(ValueError, match="needs clusters"):
        build_subsets(metric, 10, baselines=("clust_rand",))
    with pytest.raises(ValueError, match="collides"):
        build_subsets(metric, 10, name="random")
    with pytest.raises(ValueError, match="unknown baseline"):
        build_subsets(metric, 10, baselines=("everything",))


def test_build_subsets_exclude_acts_as_if_the_samples_were_absent(data):
    metric, labels = data
    rng = np.random.default_rng(5)
    excluded = np.sort(rng.choice(len(metric), 60, replace=False))
    keep = np.setdiff1d(np.arange(len(metric)), excluded)
    baselines = ("random", "clust_rand", "full")
    for clusters in (None, labels):
        out = build_subsets(metric, 10, True, "lp1", clusters=clusters, baselines=tuple(
            b for b in baselines if clusters is not None or b != "clust_rand"), exclude=excluded)
        inner = build_subsets(metric[keep], 10, True, "lp1", clusters=None if clusters is None else labels[keep],
                              baselines=tuple(b for b in baselines if clusters is not None or b != "clust_rand"))
        assert list(out) == list(inner)
        for name in out:
            assert out[name].tolist() == keep[inner[name]].tolist()
            assert not set(out[name].tolist()) & set(excluded.tolist())
    # A size-1 cluster holding only an excluded sample gives nothing.
    tiny = np.array([0, 0, 0, 1])
    assert build_subsets(np.array([0.1, 0.2, 0.3, -9.0]), 33, True, "m", tiny, baselines=(),
                         exclude=[3])["m"].tolist() == [0]
    same = build_subsets(metric, 10, exclude=[])
    assert same["selected"].tolist() == build_subsets(metric, 10)["selected"].tolist()
