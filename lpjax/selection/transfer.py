"""Does hardness transfer? Compare the difficulty vectors of several probes.

The paper's claim (docs/method.md) is that a small probe ranks samples like a
large one does: the Kendall tau between their LP vectors rises with probe
size (OPT-350M vs OPT-13B on Alpaca: .601 for LP1, .714 for LP_app). This
module measures that for any set of metric vectors over the same samples:

- rank correlations: Kendall tau-b and Spearman rho, pairwise;
- overlap of the subsets they would select at each percentage,
  |A ∩ B| / |A|, for the global hardest-p % rule and, given clusters, the
  per-cluster chunk rule;
- plots (heatmap, histograms) and a markdown section for a report.

The math is pure numpy/scipy; the plots use matplotlib's object API with the
Agg canvas (no pyplot state, no display) and are written atomically.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

from lpjax import atomic, markdown
from lpjax.selection.select import select_hardest, select_per_cluster

METHODS = ("kendall", "spearman")


def _vectors(metrics: Mapping[str, np.ndarray]) -> tuple[list[str], list[np.ndarray]]:
    labels = list(metrics)
    if not labels:
        raise ValueError("need at least one metric vector")
    arrays = [np.asarray(metrics[k], dtype=np.float64) for k in labels]
    n = arrays[0].shape
    for label, arr in zip(labels, arrays):
        if arr.ndim != 1 or arr.shape != n:
            raise ValueError(f"metric {label!r} has shape {arr.shape}; every vector must be 1-D of shape {n}")
        if np.isnan(arr).any():
            raise ValueError(f"metric {label!r} contains NaN")
    return labels, arrays


def rank_correlation(a: np.ndarray, b: np.ndarray, method: str = "kendall") -> float:
    """Kendall tau-b (scipy's default variant, ties counted) or Spearman rho."""
    if method == "kendall":
        return float(stats.kendalltau(a, b).statistic)
    if method == "spearman":
        return float(stats.spearmanr(a, b).statistic)
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")


def correlation_matrix(metrics: Mapping[str, np.ndarray], method: str = "kendall") -> np.ndarray:
    """[k, k] symmetric matrix of pairwise rank correlations, in the dict's order; diagonal 1."""
    labels, arrays = _vectors(metrics)
    k = len(labels)
    out = np.eye(k)
    for i in range(k):
        for j in range(i + 1, k):
            out[i, j] = out[j, i] = rank_correlation(arrays[i], arrays[j], method)
    return out


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """|A ∩ B| / |A| for two index sets (duplicates ignored)."""
    sa, sb = set(np.asarray(a).tolist()), set(np.asarray(b).tolist())
    if not sa:
        raise ValueError("overlap of an empty selection is undefined")
    return len(sa & sb) / len(sa)


def selections(
    metrics: Mapping[str, np.ndarray],
    percent: float,
    hard_is_low: bool = True,
    clusters: np.ndarray | None = None,
    part: str = "low",
) -> dict[str, np.ndarray]:
    """Each metric's selection at `percent`: global hardest, or per-cluster when clusters are given."""
    labels, arrays = _vectors(metrics)
    if clusters is None:
        return {k: select_hardest(v, percent, hard_is_low) for k, v in zip(labels, arrays)}
    return {k: select_per_cluster(v, clusters, percent, part, hard_is_low) for k, v in zip(labels, arrays)}


def overlap_matrix(chosen: Mapping[str, np.ndarray]) -> np.ndarray:
    """[k, k] matrix M[i, j] = |S_i ∩ S_j| / |S_i| of k selections (``selections``' output)."""
    sets = list(chosen.values())
    return np.array([[overlap(a, b) for b in sets] for a in sets])


def overlaps_by_percent(
    metrics: Mapping[str, np.ndarray],
    percents: Sequence[float],
    hard_is_low: bool = True,
    clusters: np.ndarray | None = None,
) -> dict[str, dict[float, np.ndarray]]:
    """{"global": {p: matrix}, and "per_cluster": {p: matrix} when clusters are given}."""
    out = {"global": {p: overlap_matrix(selections(metrics, p, hard_is_low)) for p in percents}}
    if clusters is not None:
        out["per_cluster"] = {p: overlap_matrix(selections(metrics, p, hard_is_low, clusters)) for p in percents}
    return out


# ---------------------------------------------------------------------------
# Plots


def plot_heatmap(
    matrix: np.ndarray, labels: Sequence[str], path: str | os.PathLike, title: str = "",
    vmin: float | None = None, vmax: float | None = None,
) -> str:
    """An annotated heatmap of a [k, k] matrix (rows and columns = labels) as PNG."""
    from matplotlib.figure import Figure

    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] != len(labels):
        raise ValueError(f"matrix of shape {m.shape} does not match {len(labels)} labels")
    k = len(labels)
    size = 1.2 + 0.9 * k
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.add_subplot()
    image = ax.imshow(m, cmap="viridis", vmin=vmin, vmax=vmax)
    fig.colorbar(image, ax=ax)
    ax.set_xticks(range(k), labels=list(labels), rotation=45, ha="right")
    ax.set_yticks(range(k), labels=list(labels))
    finite = m[np.isfinite(m)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{m[i, j]:.3f}", ha="center", va="center", fontsize=8,
                    color="black" if m[i, j] > middle else "white")
    if title:
        ax.set_title(title)
    return atomic.save_figure(fig, path)


def plot_lp_histograms(
    metrics: Mapping[str, np.ndarray], path: str | os.PathLike, bins: int = 60, title: str = "",
    clip: float = 0.5,
) -> str:
    """One histogram per metric vector, stacked on shared bins, as PNG.

    LP has heavy tails (a tiny P0 - Pn makes LP(i) huge), so the common range
    is the `clip`..(100 - `clip`) percentile of all finite values; values
    outside it (infinities included) are left out of the bars and counted in
    each panel's title.
    """
    from matplotlib.figure import Figure

    labels, arrays = _vectors(metrics)
    everything = np.concatenate(arrays)
    everything = everything[np.isfinite(everything)]  # +-inf (an excluded sample) is only counted
    if everything.size == 0:
        everything = np.zeros(1)
    lo, hi = np.percentile(everything, [clip, 100 - clip]) if clip > 0 else (everything.min(), everything.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    fig = Figure(figsize=(7, 1.8 * len(labels) + 0.8))
    axes = fig.subplots(len(labels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, label, arr in zip(axes, labels, arrays):
        inside = (arr >= lo) & (arr <= hi)
        outside = int((~inside).sum())
        ax.hist(arr[inside], bins=edges, color="tab:blue")
        ax.set_ylabel("samples")
        ax.set_title(f"{label} (n={arr.size}, median {np.median(arr):.3g}, {outside} outside the range)",
                     fontsize=9)
    axes[-1].set_xlabel("metric value")
    if title:
        fig.suptitle(title)
    return atomic.save_figure(fig, path)


# ---------------------------------------------------------------------------
# Markdown


def _fmt(x: float) -> str:
    return "nan" if not np.isfinite(x) else f"{x:.3f}"


def _matrix_table(matrix: np.ndarray, labels: Sequence[str]) -> list[str]:
    lines = ["| | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for label, row in zip(labels, matrix):
        lines.append(f"| {label} | " + " | ".join(_fmt(x) for x in row) + " |")
    return lines


def transfer_report(
    metrics: Mapping[str, np.ndarray],
    percents: Sequence[float] = (1, 5, 10),
    hard_is_low: bool = True,
    clusters: np.ndarray | None = None,
    metric_name: str = "",
    plot_dir: str | os.PathLike | None = None,
    link_dir: str = "",
) -> str:
    """A markdown section: rank correlations, subset overlaps, and (with
    `plot_dir`) heatmaps and histograms, linked as `link_dir`/<file> (the
    plots' directory as seen from where the markdown will live)."""
    labels, arrays = _vectors(metrics)
    tau = correlation_matrix(metrics, "kendall")
    rho = correlation_matrix(metrics, "spearman")
    overlaps = overlaps_by_percent(metrics, percents, hard_is_low, clusters)
    what = f"`{metric_name}` " if metric_name else ""
    lines = [
        "## Hardness transfer across probes", "",
        f"{len(labels)} {what}vectors over {arrays[0].size} samples "
        f"({'low' if hard_is_low else 'high'} = hard). A probe whose ranking agrees with the "
        "target's can select for it.", "",
        "### Kendall tau-b", "", *_matrix_table(tau, labels), "",
        "### Spearman rho", "", *_matrix_table(rho, labels), "",
        "### Overlap of the selected subsets", "",
        "Share of A's hardest p % that B selects too, |A ∩ B| / |A|"
        + (" (global rule; per-cluster chunk rule in brackets)." if clusters is not None else " (global rule)."),
        "",
    ]
    pairs = [(i, j) for i in range(len(labels)) for j in range(i + 1, len(labels))]
    if pairs:
        def cell(i: int, j: int, p: float) -> str:
            text = _fmt(overlaps["global"][p][i, j])
            if clusters is not None:
                text += f" [{_fmt(overlaps['per_cluster'][p][i, j])}]"
            return text

        lines += markdown.table(["A", "B", *(f"{p:g} %" for p in percents)],
                                [[labels[i], labels[j], *(cell(i, j, p) for p in percents)] for i, j in pairs])
    else:
        lines.append("(one vector: nothing to compare)")
    lines.append("")
    if plot_dir is not None:
        plot_dir = os.fspath(plot_dir)
        files = {
            "Kendall tau-b": plot_heatmap(tau, labels, os.path.join(plot_dir, "transfer_kendall.png"),
                                          "Kendall tau-b", vmin=-1, vmax=1),
            "Spearman rho": plot_heatmap(rho, labels, os.path.join(plot_dir, "transfer_spearman.png"),
                                         "Spearman rho", vmin=-1, vmax=1),
            "Distributions": plot_lp_histograms(metrics, os.path.join(plot_dir, "transfer_histograms.png"),
                                                title=metric_name),
        }
        for name, path in files.items():
            lines.append(f"![{name}]({os.path.join(link_dir, os.path.basename(path))})")
        lines.append("")
    return "\n".join(lines)
