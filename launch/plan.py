"""What a sweep will run, without running it: each point's config exactly as
lpjax.launch parses it, and the keys of the stages whose keys are known
before anything runs (base, data, probe, cluster, select), from
lpjax/pipeline.py's walk of them (``front``, keyed by lpjax/workdir.py's
``stage_key``). Targets and evaluations are keyed by their
subsets' indices, known only once select has run.
"""
from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

from launch.points import Point


def point_config(point: Point) -> Any:
    """The point's finalized lpjax Config, through the same config_flags
    parser and overrides lpjax.launch uses (so types, e.g. 5 -> 5.0 for a
    float field, and hence keys agree)."""
    from absl import flags
    from ml_collections import config_flags

    from lpjax.validate import finalize

    argv = ["sweep", *point.args()]
    fv = flags.FlagValues()  # a fresh registry per point: absl flags are global otherwise
    # sys_argv: the override flags are defined from the argv the parser is told about.
    config_flags.DEFINE_config_file("config", None, "", flag_values=fv, sys_argv=argv)
    fv(argv)
    return finalize(fv.config)


def _ranges(indices: Sequence[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    out, start = [], None
    for i, x in enumerate(indices):
        if start is None:
            start = x
        if i + 1 == len(indices) or indices[i + 1] != x + 1:
            out.append(str(start) if start == x else f"{start}-{x}")
            start = None
    return ",".join(out)


def describe(points: Sequence[Point], keys: Sequence[dict[str, str]], missing: Sequence[str]) -> str:
    """The dry run's text: the points, then each stage kind with how many
    distinct outputs the sweep needs and which points share each."""
    lines = [f"{len(points)} points (store {points[0].store}):", ""]
    width = len(str(len(points) - 1))
    for p in points:
        overrides = " ".join(f"{k}={v!r}" for k, v in p.overrides.items())
        lines.append(f"  {p.index:>{width}}  {p.name}  {overrides}")
    lines += ["", "stages before select, by content key (points sharing one output run it once):"]
    by_stage: dict[str, dict[str, list[int]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for p, k in zip(points, keys):
        for stage, key in k.items():
            by_stage[stage][key].append(p.index)
    for stage, groups in by_stage.items():
        n = sum(map(len, groups.values()))
        if len(groups) == n > 1:  # nothing shared: one line, not one per point
            lines.append(f"  {stage}: {n} distinct, one per point")
            continue
        lines.append(f"  {stage}: {len(groups)} distinct for {n} points")
        for key, idx in groups.items():
            lines.append(f"    {key}  points {_ranges(idx)}")
    probes = len(by_stage.get("probe", {}))
    lines += ["", f"shared probes: {probes} probe run(s) serve {len(points)} points",
              "targets and evaluations: keyed by their subsets' indices, known once select has run "
              "(a random or full subset recurring across points is tuned once)"]
    if missing:
        lines += ["", "input files not found here (their keys above stand in for content not yet seen; "
                      "the runs need them): " + ", ".join(missing)]
    return "\n".join(lines)


def summary_counts(keys: Sequence[dict[str, str]]) -> dict[str, int]:
    """{stage: number of distinct outputs} over the sweep."""
    distinct: dict[str, set[str]] = collections.defaultdict(set)
    for k in keys:
        for stage, key in k.items():
            distinct[stage].add(key)
    return {stage: len(v) for stage, v in distinct.items()}
