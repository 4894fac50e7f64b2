"""select: the metric of every training record (from the probe's scores or
from score files), the hardest select.percent % (globally or per cluster)
and the baselines.

Writes metric.json, indices_<subset>.json and subset_<subset>.* for the
selection (named after the metric) and each baseline, summary.json (pool
statistics, the hardness-transfer section) and, with select.compare, the
transfer plots."""
from __future__ import annotations

import os

import numpy as np

from lpjax import atomic
from lpjax.scoring.store import load_any, load_scores
from lpjax.selection import export, metrics, select, transfer
from lpjax.stages.common import read_json, read_split
from lpjax.workdir import Stage, StageContext, stable_hash


def run(ctx: StageContext) -> dict:
    cfg, data, probe, cluster = ctx.cfg, ctx.inputs["data"], ctx.inputs["probe"], ctx.inputs["cluster"]
    s = cfg.select
    fp = data.summary["fingerprint"]
    records = read_split(data, "train")
    meta = {"template": cfg.data.template, "max_len": cfg.data.max_len}

    def scores_of(source: str, label: str) -> np.ndarray:
        return load_any(source, fp, s.score, os.path.join(ctx.out, "imported", label), {**meta, "model": label})

    alone = None
    if probe is not None:
        scores = load_scores(os.path.join(probe.dir, "scores"), fp, s.score)[0]
        if metrics.needs_response_only(s.metric):
            alone = load_scores(os.path.join(probe.dir, "scores_response_only"), fp, s.score)[0]
        dropped = probe.summary["dropped"]  # truncation=drop: these leave the pool
    else:
        scores, dropped = scores_of(s.score_files, "scores"), []
    metric = metrics.compute_metric(s.metric, scores, response_only=alone)
    assignments = None if cluster is None else np.asarray(read_json(os.path.join(cluster.dir, "assignments.json")))
    hard_low = metrics.hard_is_low(s.metric)
    subsets = select.build_subsets(metric, s.percent, hard_low, s.metric, assignments, s.part, tuple(s.baselines),
                                   cfg.seed, exclude=dropped or None)
    atomic.write_json(os.path.join(ctx.out, "metric.json"), {"name": s.metric, "score": s.score, "values": metric})
    for name, idx in subsets.items():
        atomic.write_json(os.path.join(ctx.out, f"indices_{name}.json"), idx)
        export.export_subset(records, idx, ctx.out, f"subset_{name}", tuple(s.export_formats))
    transfer_md = ""
    if s.compare:
        # Hardness transfer: this selection's metric against other models' on the same records.
        vectors = {"probe" if probe is not None else os.path.basename(os.path.normpath(s.score_files)): metric}
        for i, other in enumerate(s.compare):
            label = os.path.basename(os.path.normpath(other)) or f"compare{i}"
            vectors[label] = metrics.compute_metric(s.metric, scores_of(other, label))
        # Linked from report.md in the workdir, where select/ points here.
        transfer_md = transfer.transfer_report(vectors, tuple(s.percents), hard_low, assignments, s.metric,
                                               plot_dir=ctx.out, link_dir="select")
    atomic.write_json(os.path.join(ctx.out, "summary.json"),
                      {"pool_stats": export.pool_stats(records, subsets[s.metric]), "transfer_markdown": transfer_md})
    return {"subsets": {name: len(idx) for name, idx in subsets.items()},
            "subset_keys": {name: stable_hash(np.asarray(idx).tolist()) for name, idx in subsets.items()},
            "clustered": assignments is not None}


def _files(cfg) -> list[str]:
    s = cfg.select
    return [p for p in ((s.score_files if s.scores_from == "files" else ""), *s.compare) if p]


STAGE = Stage("select", run, reads=("seed", "select", "data.template", "data.max_len"),
              needs=("data", "probe", "cluster"), files=_files)
