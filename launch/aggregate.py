"""One report over a sweep's runs: results.csv (a row per run and subset)
and report.md with its figures.

    python launch/aggregate.py runs/sweeps/embedded [more runs or workdirs ...] [--out DIR]

The report: target quality (held-out exact match and response loss) against
subset size for each metric next to random and full data, LP(i) against
LP_app, hard/mid/easy chunks, probe size against target size, and selection
cost against tuning cost; every figure is the mean over seeds with a 95 %
Student-t interval.
"""
from __future__ import annotations

import argparse
import collections
import csv
import math
import os
import sys
from collections.abc import Iterable, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from launch.collect import BASELINES, collect, columns  # noqa: E402
from launch.stats import Summary, paired, summarize  # noqa: E402
from lpjax import markdown  # noqa: E402

BASELINE_ORDER = ("clust_rand", "random", "random_tokens", "longest", "full")


# ---------------------------------------------------------------- grouping (pure)

def measures(rows: Sequence[dict]) -> list[tuple[str, str, str]]:
    """(column, name, which way is better) of every quality measure the rows
    hold: exact match where answers were generated, the held-out response
    loss, and each reference set's response loss."""
    out = [("exact_match", "held-out exact match", "higher is better")] \
        if any(r.get("exact_match", "") != "" for r in rows) else []
    out.append(("loss", "held-out response loss", "lower is better"))
    refs = sorted({k for r in rows for k in r if k.startswith("loss:")})
    return out + [(k, f"{k[5:]} reference response loss", "lower is better") for k in refs]


def panels(rows: Sequence[dict]) -> list[tuple[str, str, str, str]]:
    """(setting, data, target, probe) of every selection setting; baselines join each."""
    return sorted({(r["setting"], r["data"], r["target"], r["probe"]) for r in rows if r["probe"] != "-"}) or \
        sorted({(r["setting"], r["data"], r["target"], "-") for r in rows})


def method_label(row: dict, rows: Sequence[dict]) -> str:
    """The method's name, with the chunk and the probe's epochs where the
    sweep varies them."""
    selection = [r for r in rows if r["probe"] != "-"]
    label = row["method"]
    if len({r["part"] for r in selection}) > 1 and row["part"] != "-":
        label += {"low": " hard", "mid": " mid", "high": " easy"}.get(row["part"], f" {row['part']}")
    if len({r["probe_epochs"] for r in selection}) > 1 and row["probe_epochs"] != "-":
        label += f" ({row['probe_epochs']} ep probe)"
    return label


def panel_rows(rows: Sequence[dict], panel: tuple[str, str, str, str]) -> list[dict]:
    setting, data, target, probe = panel
    return [r for r in rows if r["setting"] == setting and r["data"] == data and r["target"] == target
            and r["probe"] in (probe, "-")]


def by_seed(rows: Iterable[dict], measure: str) -> dict[tuple[str, float], dict[int, float]]:
    """{(label, percent): {seed: value}}; labels from method_label over
    ``rows``; rows without the measure (no answers generated) left out."""
    rows = list(rows)
    out: dict[tuple[str, float], dict[int, float]] = collections.defaultdict(dict)
    for r in rows:
        if r.get(measure, "") != "":
            out[(method_label(r, rows), r["percent"])][r["seed"]] = float(r[measure])
    return out


def against_baselines(rows: Sequence[dict], measure: str) -> list[tuple[str, float, str, Summary]]:
    """(selection label, percent, baseline, paired selection - baseline over
    seeds) for every baseline of the selection's size in ``rows`` (one
    panel): the comparison a selection method has to win."""
    cells = by_seed(rows, measure)
    out = []
    for (label, pct), values in sorted(cells.items()):
        if label.split()[0] in BASELINES:
            continue
        for baseline in BASELINE_ORDER[:-1]:
            if (baseline, pct) in cells:
                out.append((label, pct, baseline, paired(values, cells[(baseline, pct)])))
    return out


def quality_table(rows: Sequence[dict], measure: str) -> tuple[list[str], list[float], dict[str, dict[float, Summary]]]:
    """(labels, percents, {label: {percent: Summary over seeds}})."""
    cells = by_seed(rows, measure)
    percents = sorted({p for _, p in cells})
    labels = sorted({label for label, _ in cells},
                    key=lambda s: (s.split()[0] in BASELINE_ORDER, BASELINE_ORDER.index(s.split()[0])
                                   if s.split()[0] in BASELINE_ORDER else 0, s))
    table = {label: {p: summarize(list(cells[(label, p)].values())) for p in percents if (label, p) in cells}
             for label in labels}
    return labels, percents, table


def lp_vs_lp_app(rows: Sequence[dict], measure: str) -> list[tuple[str, float, Summary]]:
    """(LP metric, percent, paired LP_app - LP(i) over seeds) where both ran
    on the same data, probe, target, chunk, size and seed."""
    def key(r):
        return (r["setting"], r["data"], r["probe"], r["target"], r["part"], r["percent"])

    lp_app = {(key(r), r["seed"]): float(r[measure]) for r in rows if r["method"] == "lp_app"}
    out = []
    for metric in sorted({r["method"] for r in rows if r["method"].startswith("lp") and r["method"][2:].isdigit()}):
        for pct in sorted({r["percent"] for r in rows if r["method"] == metric}):
            a = {r["seed"]: lp_app[(key(r), r["seed"])] for r in rows
                 if r["method"] == metric and r["percent"] == pct and (key(r), r["seed"]) in lp_app}
            b = {r["seed"]: float(r[measure]) for r in rows if r["method"] == metric and r["percent"] == pct}
            if a:
                out.append((metric, pct, paired(a, b)))
    return out


def cost_rows(rows: Sequence[dict]) -> list[list]:
    """Per selection setting and size: selection FLOPs, tuning FLOPs, and
    their sum as a fraction of tuning on the full data (same seed)."""
    full = {(r["setting"], r["data"], r["target"], r["seed"]): r["tuning_flops"] for r in rows
            if r["method"] == "full"}
    groups: dict[tuple, list[dict]] = collections.defaultdict(list)
    for r in rows:
        if r["method"] != "full":
            groups[(r["setting"], r["data"], r["target"], r["probe"], method_label(r, rows), r["percent"])].append(r)
    out = []
    for (setting, data, target, probe, label, pct), rs in sorted(groups.items()):
        sel = summarize([r["selection_flops"] for r in rs]).mean
        tune = summarize([r["tuning_flops"] for r in rs]).mean
        fractions = [(r["selection_flops"] + r["tuning_flops"]) / full[(setting, data, target, r["seed"])]
                     for r in rs if full.get((setting, data, target, r["seed"]))]
        secs = summarize([r["selection_seconds"] + r["tuning_seconds"] for r in rs]).mean
        out.append([label if setting == "-" else f"{label} ({setting})", probe, target, f"{pct:g}", markdown.flops(sel),
                    markdown.flops(tune), f"{summarize(fractions).mean:.1%}" if fractions else "", f"{secs:.0f}"])
    return out


# ---------------------------------------------------------------- output

def write_csv(rows: Sequence[dict], path: str) -> None:
    with open(path, "w", newline="") as f:
        names = columns(rows)
        w = csv.DictWriter(f, fieldnames=names)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in names})


def quality_figure(rows: Sequence[dict], title: str, path: str) -> None:
    """Quality against subset size, one line per method with its 95 %
    interval; random dashed, the full data as a band across."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lpjax import atomic

    shown = measures(rows)
    fig, axes = plt.subplots(1, len(shown), figsize=(5.5 * len(shown), 4), squeeze=False)
    axes = axes[0]
    for ax, (measure, name, better) in zip(axes, shown):
        labels, percents, table = quality_table(rows, measure)
        for label in labels:
            pts = sorted(table[label].items())
            xs, ms = [p for p, _ in pts], [s.mean for _, s in pts]
            err = [0 if math.isnan(s.half) else s.half for _, s in pts]
            if label == "full":
                m, h = ms[0], err[0]
                ax.axhline(m, color="black", lw=1, label="full data")
                ax.axhspan(m - h, m + h, color="black", alpha=0.08)
                continue
            style = dict(ls="--", color="gray") if label.startswith(("random", "clust_rand")) else {}
            ax.errorbar(xs, ms, yerr=err, marker="o", capsize=3, label=label, **style)
        ax.set_xscale("log")
        ax.minorticks_off()  # log-scale minor labels (6 x 10^0) would crowd the sizes
        ticks = [p for p in percents if p < 100]
        ax.set_xticks(ticks, [f"{p:g}" for p in ticks])
        ax.set_xlabel("subset size (% of the pool)")
        ax.set_ylabel(f"{name} ({better})")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic.save_figure(fig, path)
    plt.close(fig)


def report(rows: Sequence[dict], unfinished: Sequence[str], out: str) -> str:
    """Write results.csv, the figures and report.md into ``out``; returns report.md's path."""
    from lpjax import atomic

    os.makedirs(out, exist_ok=True)
    write_csv(rows, os.path.join(out, "results.csv"))
    seeds = sorted({r["seed"] for r in rows})
    lines = ["# lpjax sweep report", "",
             f"{len({r['workdir'] for r in rows})} runs contributing {len(rows)} distinct tuned-and-evaluated targets, seeds "
             f"{', '.join(map(str, seeds))}. Cells: mean ± half-width of the 95 % Student-t interval over seeds "
             "(n = seeds). Every row is in [results.csv](results.csv).", ""]
    if unfinished:
        lines += [f"Not finished, left out: {', '.join(os.path.basename(w) for w in unfinished)}.", ""]
    lines += ["## Target quality against subset size", ""]
    for i, panel in enumerate(panels(rows)):
        setting, data, target, probe = panel
        prow = panel_rows(rows, panel)
        title = (f"`{setting}`: " if setting != "-" else "") + f"data `{data}`, target `{target}`" \
            + (f", probe `{probe}`" if probe != "-" else "")
        lines += [f"### {title}", ""]
        sizes = collections.defaultdict(set)
        for r in prow:
            sizes[r["percent"]].add(r["n_train"])
        lines += ["Subset sizes: " + ", ".join(f"{p:g} % = {'/'.join(map(str, sorted(n)))}"
                                               for p, n in sorted(sizes.items())) + " samples.", ""]
        fig = f"quality_{i}.png"
        quality_figure(prow, title.replace("`", ""), os.path.join(out, fig))
        lines += [f"![quality against subset size]({fig})", ""]
        for measure, name, better in measures(prow):
            labels, percents, table = quality_table(prow, measure)
            lines += [f"{name.capitalize()} ({better}):", ""]
            lines += markdown.table(["method"] + [f"{p:g} %" for p in percents],
                                    [[label] + [table[label][p].text() if p in table[label] else "" for p in percents]
                                     for label in labels])
            lines += [""]
        paired_rows = {m: against_baselines(prow, m) for m, _, _ in measures(prow)}
        first = next(iter(paired_rows.values()))
        if first:
            lines += ["The selection minus each baseline of its size, paired by seed (for a loss, below zero "
                      "means the selection did better; for exact match, above zero):", ""]
            lines += markdown.table(["method", "size", "baseline"] + [name for _, name, _ in measures(prow)],
                                    [[label, f"{pct:g} %", base] + [paired_rows[m][j][3].text() for m in paired_rows]
                                     for j, (label, pct, base, _) in enumerate(first)]) + [""]

    shown = measures(rows)
    diffs = {m: lp_vs_lp_app(rows, m) for m, _, _ in shown}
    if any(diffs.values()):
        lines += ["## LP(i) against LP_app", "",
                  "LP_app minus LP(i), paired by seed (same probe run, size and seed):", ""]
        first = diffs[shown[0][0]]
        table_rows = [[metric, f"{pct:g} %"] + [diffs[m][j][2].text() for m, _, _ in shown]
                      for j, (metric, pct, _) in enumerate(first)]
        lines += markdown.table(["LP", "size"] + [f"{name} difference" for _, name, _ in shown], table_rows) + [""]

    selection = [r for r in rows if r["probe"] != "-"]
    parts = sorted({r["part"] for r in selection})
    lines += ["## Hard, mid and easy chunks", ""]
    if len(parts) > 1:
        lines += ["Per-cluster chunks of each metric (low = hard, mid, high = easy); the tables above show each "
                  "chunk as its own method.", ""]
        for measure, name, _ in measures(selection):
            cells = collections.defaultdict(list)
            for r in selection:
                if r.get(measure, "") != "":
                    cells[(r["method"], r["percent"], r["part"])].append(float(r[measure]))
            lines += [f"{name.capitalize()}:", ""]
            lines += markdown.table(["metric", "size"] + parts,
                                    [[m, f"{p:g} %"] + [summarize(cells.get((m, p, part), [])).text() for part in parts]
                                     for m, p in sorted({(m, p) for m, p, _ in cells})]) + [""]
    else:
        lines += ["This sweep has one chunk (`select.part`); the paper's hard/mid/easy comparison needs "
                  "clusters and a `select.part` axis.", ""]

    probes, targets = sorted({r["probe"] for r in selection}), sorted({r["target"] for r in selection})
    lines += ["## Probe size against target size", ""]
    if len(probes) > 1 or len(targets) > 1:
        measure, name, _ = measures(selection)[0]
        lines += [f"{name.capitalize()} of each probe's selection on each target, by size (mean over seeds):", ""]
        cells = collections.defaultdict(list)
        for r in selection:
            cells[(r["probe"], r["method"], r["percent"], r["target"])].append(float(r[measure]))
        keys = sorted({(p, m, pct) for p, m, pct, _ in cells})
        lines += markdown.table(["probe", "metric", "size"] + targets,
                                [[p, m, f"{pct:g} %"]
                                 + [summarize(cells.get((p, m, pct, t), [])).text() for t in targets]
                                 for p, m, pct in keys]) + [""]
    else:
        lines += [f"One probe (`{probes[0] if probes else '-'}`) and one target in this sweep.", ""]

    lines += ["## Selection cost against tuning cost", "",
              "Training FLOPs ~ 6 x parameters x tokens, scoring 2 x (lpjax/training/cost.py), mean over seeds; "
              "the fraction is (selection + tuning) / tuning on the full data, per seed. Seconds are wall time "
              "on the machine that ran each point.", ""]
    lines += markdown.table(["method", "probe", "target", "size %", "selection FLOPs", "tuning FLOPs",
                             "of full tuning", "seconds"], cost_rows(rows)) + [""]
    return atomic.write_text(os.path.join(out, "report.md"), "\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="sweep directories or workdirs")
    ap.add_argument("--out", default="", help="where results.csv and report.md go (default <first run>/aggregate)")
    args = ap.parse_args(argv)
    rows, unfinished = collect(args.runs)
    if not rows:
        print(f"aggregate: no finished run with evaluated targets under {' '.join(args.runs)}", file=sys.stderr)
        return 1
    path = report(rows, unfinished, args.out or os.path.join(args.runs[0], "aggregate"))
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
