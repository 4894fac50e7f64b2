"""k-means against independent numpy / scipy references."""
import numpy as np
import pytest
from scipy.cluster.vq import kmeans2

from lpjax.selection.kmeans import assign_clusters, kmeans


def _inertia(x, assign, centroids):
    return float(np.sum((x.astype(np.float64) - centroids[assign]) ** 2))


# Tests share shapes (600 x 8; k 6 or 12) so each jitted function compiles
# once or twice: compiling costs far more than these k-means runs.
def _blobs(n=600, k=6, dim=8, seed=0, spread=10.0, noise=0.5):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, dim)) * spread
    labels = rng.integers(0, k, n)
    return (centers[labels] + noise * rng.standard_normal((n, dim))).astype(np.float32), labels


def _mixture(n=600, dim=8, components=30, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((components, dim)) * 3
    return (means[rng.integers(0, components, n)] + rng.standard_normal((n, dim))).astype(np.float32)


def _numpy_lloyd(x, c, max_iter=300):
    """Textbook Lloyd in float64 from the given centroids, until assignments stop changing."""
    x = x.astype(np.float64)
    c = c.astype(np.float64).copy()
    prev = None
    for _ in range(max_iter):
        a = np.argmin(((x[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
        if prev is not None and np.array_equal(a, prev):
            break
        for j in range(len(c)):
            if np.any(a == j):
                c[j] = x[a == j].mean(0)
        prev = a
    return a, c


def _same_partition(a, b):
    """True if the labelings are equal up to a permutation of labels."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_recovers_well_separated_blobs_exactly():
    x, labels = _blobs()
    assign, centroids = kmeans(x, 6, seed=0)
    assert assign.dtype == np.int32 and assign.shape == (len(x),)
    assert centroids.shape == (6, x.shape[1])
    assert _same_partition(assign, labels)
    # Each centroid is its cluster's mean.
    for j in range(6):
        np.testing.assert_allclose(centroids[j], x[assign == j].mean(0), atol=1e-4)


def test_lloyd_matches_numpy_reference_from_same_init():
    x = _mixture(seed=3)
    init = x[np.random.default_rng(0).choice(len(x), 12, replace=False)]
    assign, centroids = kmeans(x, 12, seed=0, tol=0.0, iters=300, init=init)
    ref_a, ref_c = _numpy_lloyd(x, init)
    np.testing.assert_array_equal(assign, ref_a)
    np.testing.assert_allclose(centroids, ref_c, atol=1e-4)


@pytest.mark.parametrize("data", ["mixture", "noise"])
def test_inertia_not_worse_than_scipy_kmeans2(data):
    rng = np.random.default_rng(1)
    x = _mixture(seed=1) if data == "mixture" else rng.standard_normal((600, 8)).astype(np.float32)
    k = 12
    ours = np.mean([_inertia(x, *kmeans(x, k, seed=s)) for s in range(10)])
    theirs = np.mean([_inertia(x, *kmeans2(x, k, seed=s, minit="++", iter=100)[::-1]) for s in range(10)])
    # On structured data greedy k-means++ should win outright; on isotropic
    # noise all local optima are within a fraction of a percent of each other.
    slack = 1.0 if data == "mixture" else 1.01
    assert ours <= theirs * slack, (ours, theirs)


def test_deterministic_per_seed():
    x = _mixture(seed=2)
    a1, c1 = kmeans(x, 12, seed=7)
    a2, c2 = kmeans(x, 12, seed=7)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(c1, c2)
    _, c3 = kmeans(x, 12, seed=8)
    assert not np.array_equal(c1, c3)


def test_batched_assignment_equals_unbatched_reference():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((503, 16)).astype(np.float32)
    c = rng.standard_normal((37, 16)).astype(np.float32)
    d_ref = ((x[:, None, :].astype(np.float64) - c[None]) ** 2).sum(-1)
    for rows in (7, 100_000):  # ragged last batch; one batch (batch_rows > N)
        a, d = assign_clusters(x, c, batch_rows=rows)
        np.testing.assert_array_equal(a, np.argmin(d_ref, axis=1))
        np.testing.assert_allclose(d, d_ref.min(1), rtol=1e-5, atol=1e-4)


def test_kmeans_independent_of_batch_rows():
    x, _ = _blobs(seed=5)
    a_full, c_full = kmeans(x, 6, seed=3)
    a_small, c_small = kmeans(x, 6, seed=3, batch_rows=64)
    np.testing.assert_array_equal(a_full, a_small)
    np.testing.assert_allclose(c_full, c_small, atol=1e-5)


def test_empty_cluster_is_reseeded_at_farthest_point():
    x, labels = _blobs(seed=6)
    means = np.stack([x[labels == j].mean(0) for j in range(6)])
    # Five centroids on blobs 0-4, one far from everything: it starts empty
    # and must move to the farthest point, which lies in blob 5.
    init = np.concatenate([means[:5], np.full((1, x.shape[1]), 1e3, np.float32)])
    assign, centroids = kmeans(x, 6, seed=0, init=init)
    assert np.bincount(assign, minlength=6).min() > 0
    assert _same_partition(assign, labels)


def test_bad_arguments():
    x = np.zeros((5, 2), np.float32)
    with pytest.raises(ValueError, match="k must be"):
        kmeans(x, 6, seed=0)
    with pytest.raises(ValueError, match="N, D"):
        kmeans(np.zeros(5, np.float32), 2, seed=0)
    with pytest.raises(ValueError, match="init"):
        kmeans(x, 2, seed=0, init=np.zeros((3, 2)))


def test_inertia_not_worse_than_sklearn_kmeans():
    # The authors cluster with sklearn's KMeans (greedy k-means++, one init,
    # Lloyd): the algorithm we follow. sklearn is a test-only reference.
    cluster = pytest.importorskip("sklearn.cluster")
    x = _mixture(seed=4)
    ours = np.mean([_inertia(x, *kmeans(x, 12, seed=s)) for s in range(10)])
    theirs = np.mean([cluster.KMeans(12, n_init=1, random_state=s).fit(x).inertia_ for s in range(10)])
    assert ours <= theirs * 1.01, (ours, theirs)
