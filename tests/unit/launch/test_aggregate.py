"""The sweep report's tables on a small hand-made table of rows, checked
against numpy/scipy computed here; and the files it writes."""
import csv
import math
import os

import numpy as np
from scipy import stats

from launch import aggregate

SEEDS = (1, 2, 3)
# exact match per (method, percent) and seed; loss = 1 - exact match.
EM = {("lp_app", 5.0): (0.30, 0.34, 0.29), ("lp1", 5.0): (0.28, 0.30, 0.30), ("random", 5.0): (0.20, 0.25, 0.22),
      ("lp_app", 10.0): (0.40, 0.45, 0.41), ("lp1", 10.0): (0.41, 0.42, 0.40), ("random", 10.0): (0.35, 0.30, 0.33),
      ("full", 100.0): (0.50, 0.52, 0.51)}


def rows():
    out = []
    for (method, pct), values in EM.items():
        for seed, v in zip(SEEDS, values):
            baseline = method in ("random", "full")
            out.append({"point": f"{method}-{pct}-{seed}", "setting": "-", "seed": seed, "data": "synthetic",
                        "probe": "-" if baseline else "p", "probe_epochs": "-" if baseline else 3, "target": "t",
                        "method": method, "part": "-" if baseline else "low", "percent": pct,
                        "n_train": int(pct * 10), "exact_match": v, "loss": 1 - v, "mean_ppl": 2.0,
                        "selection_flops": 0.0 if baseline else 1e12, "selection_seconds": 0.0 if baseline else 5.0,
                        "tuning_flops": pct * 1e11, "tuning_seconds": pct, "evaluate_key": f"k{method}{pct}{seed}",
                        "workdir": f"/w/{method}-{pct}-{seed}"})
    return out


def test_quality_table_is_mean_and_t_interval_over_seeds():
    labels, percents, table = aggregate.quality_table(rows(), "exact_match")
    assert labels == ["lp1", "lp_app", "random", "full"] and percents == [5.0, 10.0, 100.0]
    for (method, pct), values in EM.items():
        s = table[method][pct]
        lo, _ = stats.t.interval(0.95, 2, loc=np.mean(values), scale=stats.sem(values))
        assert s.n == 3 and math.isclose(s.mean, np.mean(values)) and math.isclose(s.lo, lo)
    assert 100.0 not in table["lp_app"]


def test_lp_app_minus_lp1_is_paired_by_seed():
    diffs = aggregate.lp_vs_lp_app(rows(), "exact_match")
    assert [(m, p) for m, p, _ in diffs] == [("lp1", 5.0), ("lp1", 10.0)]
    for metric, pct, d in diffs:
        a, b = EM[("lp_app", pct)], EM[("lp1", pct)]
        ref = stats.ttest_rel(a, b).confidence_interval(0.95)
        assert math.isclose(d.mean, np.mean(np.subtract(a, b))) and math.isclose(d.lo, ref.low)


def test_cost_is_selection_plus_tuning_over_full_tuning():
    table = {(r[0], r[3]): r for r in aggregate.cost_rows(rows())}
    # lp_app at 5 %: (1e12 probe + 5e11 tuning) / 1e13 full tuning = 15 %.
    assert table[("lp_app", "5")][6] == "15.0%"
    assert table[("random", "10")][6] == "10.0%"  # a baseline costs its tuning alone
    assert table[("lp_app", "5")][4] == "1.00e+12"


def test_report_writes_csv_markdown_and_figure(tmp_path):
    path = aggregate.report(rows(), [], str(tmp_path))
    text = open(path).read()
    assert os.path.getsize(tmp_path / "quality_0.png") > 1000 and "![quality against subset size](quality_0.png)" in text
    s = aggregate.summarize(EM[("lp_app", 5.0)])
    assert f"| lp_app | {s.text()} |" in text  # the 5 % cell of the exact-match table
    assert "## LP(i) against LP_app" in text and "## Selection cost against tuning cost" in text
    with open(tmp_path / "results.csv") as f:
        got = list(csv.DictReader(f))
    assert len(got) == len(rows()) and float(got[0]["exact_match"]) == rows()[0]["exact_match"]


def test_selection_minus_each_baseline_is_paired_by_seed():
    extra = [{**r, "method": "longest", "evaluate_key": r["evaluate_key"] + "L",
              "exact_match": r["exact_match"] - 0.01 * r["seed"]} for r in rows() if r["method"] == "random"]
    got = {(label, pct, base): d for label, pct, base, d in aggregate.against_baselines(rows() + extra, "exact_match")}
    assert set(got) == {(m, p, b) for m in ("lp1", "lp_app") for p in (5.0, 10.0) for b in ("random", "longest")}
    a, b = EM[("lp_app", 5.0)], EM[("random", 5.0)]
    ref = stats.ttest_rel(a, b).confidence_interval(0.95)
    d = got[("lp_app", 5.0, "random")]
    assert math.isclose(d.mean, np.mean(np.subtract(a, b))) and math.isclose(d.lo, ref.low)
    longest = [v - 0.01 * s for v, s in zip(b, SEEDS)]
    assert math.isclose(got[("lp_app", 5.0, "longest")].mean, np.mean(np.subtract(a, longest)))


def test_settings_and_reference_losses_without_exact_match(tmp_path):
    from launch.collect import setting_of

    assert setting_of("seed=1__noise_fraction=0.01__metric=lp_app__percent=5__method=none") == \
        "noise_fraction=0.01__method=none"
    assert setting_of("seed=2") == "-"
    # Two settings, no generation (exact match ""), one reference set.
    two = [{**r, "setting": s, "exact_match": "", "loss:dolly": r["loss"] + (0.5 if s == "b" else 0.0)}
           for s in ("a", "b") for r in rows()]
    assert [m for m, _, _ in aggregate.measures(two)] == ["loss", "loss:dolly"]
    assert [p[0] for p in aggregate.panels(two)] == ["a", "b"]  # one probe, "p", per setting
    path = aggregate.report(two, [], str(tmp_path))
    text = open(path).read()
    s = aggregate.summarize([1 - v + 0.5 for v in EM[("lp_app", 5.0)]])
    assert "Dolly reference response loss" in text and f"| lp_app | {s.text()} |" in text
    with open(tmp_path / "results.csv") as f:
        got = list(csv.DictReader(f))
    assert "loss:dolly" in got[0] and got[0]["exact_match"] == ""
