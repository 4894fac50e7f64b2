"""transfer.py: rank correlations, subset overlaps, plots, markdown."""

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from scipy.stats import kendalltau, spearmanr

from lpjax.selection.metrics import compute_metric
from lpjax.scoring.store import load_reference_scores
from lpjax.selection.select import select_hardest, select_per_cluster
from lpjax.selection.transfer import (
    correlation_matrix, overlap, overlap_matrix, overlaps_by_percent, plot_heatmap, plot_lp_histograms,
    rank_correlation, selections, transfer_report,
)

REF = Path("/work/shared/reference/small2large")


@pytest.fixture(scope="module")
def probes():
    rng = np.random.default_rng(0)
    base = rng.normal(size=2000)
    return {"small": base + rng.normal(scale=1.0, size=2000), "medium": base + rng.normal(scale=0.3, size=2000),
            "target": base}


def _assert_png(path):
    image = matplotlib.image.imread(str(path))
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50


@pytest.mark.skipif(not REF.is_dir(), reason=f"released reference data not available at {REF}")
def test_design_taus_through_transfer_api():
    small = load_reference_scores(REF / "alpaca-opt-350m")
    large = load_reference_scores(REF / "alpaca-opt-13b")
    for metric, expected in [("lp1", 0.601), ("lp_app", 0.714)]:
        vectors = {"opt-350m": compute_metric(metric, small), "opt-13b": compute_metric(metric, large)}
        tau = correlation_matrix(vectors, "kendall")
        assert round(float(tau[0, 1]), 3) == expected and tau[1, 0] == tau[0, 1] and tau[0, 0] == 1.0
        rho = correlation_matrix(vectors, "spearman")
        assert rho[0, 1] > tau[0, 1]  # rho is the larger of the two for a positive association


def test_matrices_match_scipy(probes):
    labels = list(probes)
    tau, rho = correlation_matrix(probes), correlation_matrix(probes, "spearman")
    for i, a in enumerate(labels):
        for j, b in enumerate(labels):
            if i != j:
                assert tau[i, j] == pytest.approx(kendalltau(probes[a], probes[b]).statistic, abs=1e-12)
                assert rho[i, j] == pytest.approx(spearmanr(probes[a], probes[b]).statistic, abs=1e-12)
    # Closer probes agree more: the transfer claim on toy data.
    assert tau[0, 2] < tau[1, 2] < 1.0
    with pytest.raises(ValueError, match="method"):
        rank_correlation(probes["small"], probes["target"], "pearson")


def test_tau_b_with_ties():
    a, b = np.array([0, 0, 1, 1, 2.0]), np.array([0, 1, 1, 2, 2.0])
    assert rank_correlation(a, b) == pytest.approx(kendalltau(a, b, variant="b").statistic)


def test_overlap_identical_is_one_and_by_hand(probes):
    same = {"a": probes["small"], "b": probes["small"].copy()}
    for p in (1, 5, 10, 33):
        np.testing.assert_array_equal(overlap_matrix(selections(same, p)), np.ones((2, 2)))
    labels = np.arange(2000) % 37
    np.testing.assert_array_equal(overlap_matrix(selections(same, 5, clusters=labels)), np.ones((2, 2)))
    assert overlap([1, 2, 3, 4], [3, 4, 5]) == 0.5 and overlap([3, 4, 5], [1, 2, 3, 4]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="empty"):
        overlap([], [1])


def test_overlap_uses_the_selection_rules(probes):
    labels = np.arange(2000) % 37
    for hard_low in (True, False):
        chosen = selections(probes, 10, hard_low)
        assert chosen["small"].tolist() == select_hardest(probes["small"], 10, hard_low).tolist()
        per = selections(probes, 10, hard_low, clusters=labels)
        assert per["medium"].tolist() == select_per_cluster(probes["medium"], labels, 10, "low", hard_low).tolist()
        m = overlap_matrix(chosen)
        a, b = set(chosen["small"].tolist()), set(chosen["target"].tolist())
        assert m[0, 2] == len(a & b) / len(a)
    out = overlaps_by_percent(probes, [1, 10], clusters=labels)
    assert set(out) == {"global", "per_cluster"} and set(out["global"]) == {1, 10}
    assert out["global"][10][1, 2] > out["global"][10][0, 2]


def test_bad_vectors():
    with pytest.raises(ValueError, match="shape"):
        correlation_matrix({"a": np.zeros(3), "b": np.zeros(4)})
    with pytest.raises(ValueError, match="NaN"):
        correlation_matrix({"a": np.array([0.0, np.nan])})
    with pytest.raises(ValueError, match="at least one"):
        correlation_matrix({})


def test_plots_are_valid_pngs_written_atomically(probes, tmp_path):
    tau = correlation_matrix(probes)
    out = plot_heatmap(tau, list(probes), tmp_path / "sub" / "tau.png", "Kendall", vmin=-1, vmax=1)
    _assert_png(out)
    heavy = dict(probes, tail=np.concatenate([probes["target"][:-5], np.full(5, 1e6)]))
    _assert_png(plot_lp_histograms(heavy, tmp_path / "hist.png", title="lp1"))
    plot_lp_histograms({"const": np.ones(10)}, tmp_path / "const.png")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["const.png", "hist.png", "sub", "tau.png"]
    with pytest.raises(ValueError, match="labels"):
        plot_heatmap(tau, ["a", "b"], tmp_path / "x.png")


def test_transfer_report(probes, tmp_path):
    labels = np.arange(2000) % 37
    text = transfer_report(probes, (1, 10), clusters=labels, metric_name="lp1",
                           plot_dir=tmp_path / "plots", link_dir="plots")
    assert text.startswith("## Hardness transfer across probes")
    assert "### Kendall tau-b" in text and "### Spearman rho" in text and "| small | target |" in text
    tau = correlation_matrix(probes)
    assert f"| medium | {tau[1, 0]:.3f} | 1.000 | {tau[1, 2]:.3f} |" in text
    for name in ["transfer_kendall.png", "transfer_spearman.png", "transfer_histograms.png"]:
        assert f"(plots/{name})" in text
        _assert_png(tmp_path / "plots" / name)
    one = transfer_report({"only": probes["small"]})
    assert "nothing to compare" in one and "![" not in one


def test_histograms_tolerate_infinities(probes, tmp_path):
    marked = probes["small"].copy()
    marked[:3] = np.inf  # e.g. excluded samples pushed to the easy end
    _assert_png(plot_lp_histograms({"marked": marked, "target": probes["target"]}, tmp_path / "h.png"))
    assert np.isfinite(correlation_matrix({"marked": marked, "target": probes["target"]})).all()
