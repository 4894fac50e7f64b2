"""Reading finished runs into rows: one row per (run, subset the target was
tuned on), with the setting, the held-out quality and the costs. I/O only;
launch/aggregate.py does the rest.

A run is a workdir with run.json (lpjax.launch writes its ``stages`` when
the run finished); a sweep directory stands for its points/*.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

# The columns of results.csv, in order; then one `loss:<set>` column per
# reference set the runs evaluated on (evaluate.reference_sets).
COLUMNS = ("point", "setting", "seed", "data", "probe", "probe_epochs", "target", "method", "part", "percent",
           "n_train", "train_tokens", "exact_match", "loss", "mean_ppl", "selection_flops", "selection_seconds",
           "tuning_flops", "tuning_seconds", "evaluate_key", "workdir")
BASELINES = ("random", "random_tokens", "longest", "clust_rand", "full")
# Baselines drawn without clusters: they have no chunk (select.part).
UNCHUNKED = ("random", "random_tokens", "longest", "full")


# The fields a sweep report lays out itself (seeds pooled, sizes and methods
# as columns and rows); every other varying field makes a setting of its own.
LAID_OUT = ("seed", "metric", "percent", "part")


def setting_of(point: str) -> str:
    """A point's setting: its name (launch/points.py: the fields the sweep
    varies) without the fields a report lays out, e.g.
    "noise_fraction=0.01__method=none" of a point that also names its seed."""
    parts = [p for p in point.split("__") if p.split("=", 1)[0] not in LAID_OUT]
    return "__".join(parts) or "-"


def find_workdirs(paths: Iterable[str]) -> list[str]:
    """Workdirs under the given paths (a workdir, a sweep directory, or any
    directory above them), sorted; stores are not searched."""
    found = []
    for path in paths:
        if os.path.isfile(os.path.join(path, "run.json")):
            found.append(os.path.abspath(path))
            continue
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d != "store" and not os.path.islink(os.path.join(root, d)))
            if "run.json" in files:
                found.append(os.path.abspath(root))
                dirs[:] = []
    return sorted(dict.fromkeys(found))


def _json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def _summary(workdir: str, stage: str) -> dict:
    path = os.path.join(workdir, stage, "stage.json")
    return _json(path).get("summary", {}) if os.path.exists(path) else {}


def run_rows(workdir: str) -> list[dict]:
    """The rows of one finished run ([] for an unfinished one)."""
    run = _json(os.path.join(workdir, "run.json"))
    stages = run.get("stages")
    if not stages:
        return []
    cfg = run["config"]
    sel, probe = cfg["select"], cfg["probe"]
    probe_cost = _summary(workdir, "probe").get("cost", {}) if "probe" in stages else {}
    select = _summary(workdir, "select")
    subsets, tokens = select.get("subsets", {}), select.get("subset_tokens", {})
    point = os.path.basename(workdir)
    rows = []
    for name, count in subsets.items():
        if f"evaluate/{name}" not in stages:
            continue
        result = _json(os.path.join(workdir, "evaluate", name, "results.json"))
        tuning = _summary(workdir, f"target/{name}").get("cost", {})
        selected = name not in BASELINES
        rows.append({
            "point": point, "setting": setting_of(point), "seed": cfg["seed"], "data": cfg["data"]["source"],
            # A baseline does not depend on the probe: "-" lets every probe's selection meet the same baseline.
            "probe": probe["model"] if selected else "-",
            "probe_epochs": probe["train"]["epochs"] if selected else "-",
            "target": cfg["target"]["model"], "method": name,
            # low/mid/high chunks exist per cluster; random, longest and full have no part.
            "part": sel["part"] if name not in UNCHUNKED else "-",
            "percent": 100.0 if name == "full" else float(sel["percent"]), "n_train": count,
            "train_tokens": tokens.get(name, ""),
            # No exact match where the run generated nothing (evaluate.generate=False).
            "exact_match": result.get("exact_match", ""), "loss": result["loss"], "mean_ppl": result["mean_ppl"],
            **{f"loss:{ref}": r["loss"] for ref, r in sorted(result.get("reference_sets", {}).items())},
            # What selecting cost (probe training + scoring); baselines need no probe.
            "selection_flops": probe_cost.get("flops", 0.0) if selected else 0.0,
            "selection_seconds": (probe_cost.get("train_seconds", 0.0) + probe_cost.get("score_seconds", 0.0)
                                  if selected else 0.0),
            "tuning_flops": tuning.get("flops", float("nan")), "tuning_seconds": tuning.get("seconds", float("nan")),
            "evaluate_key": stages[f"evaluate/{name}"], "workdir": workdir,
        })
    return rows


def collect(paths: Iterable[str]) -> tuple[list[dict], list[str]]:
    """(rows, unfinished workdirs). An evaluation shared by several points
    of one setting (a random or full target) is one row, so it counts once
    per seed; a target shared by two settings (the full data of a global and
    a per-cluster rule) is a row in each."""
    rows, unfinished, seen = [], [], set()
    for w in find_workdirs(paths):
        got = run_rows(w)
        if not got:
            unfinished.append(w)
        for r in got:
            if (r["setting"], r["evaluate_key"]) not in seen:
                seen.add((r["setting"], r["evaluate_key"]))
                rows.append(r)
    return rows, unfinished


def columns(rows: Iterable[dict]) -> list[str]:
    """COLUMNS, then the reference-set columns the rows have."""
    extra = sorted({k for r in rows for k in r if k.startswith("loss:")})
    return list(COLUMNS) + extra
