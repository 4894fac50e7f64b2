"""cluster: one cluster id per training record (cluster.method minilm or
file), for the per-cluster selection rule. Writes assignments.json."""
from __future__ import annotations

import os

import numpy as np

from lpjax import atomic
from lpjax.selection import clusters
from lpjax.stages.common import read_split
from lpjax.workdir import Stage, StageContext


def run(ctx: StageContext) -> dict:
    records = read_split(ctx.inputs["data"], "train")
    assignments = clusters.assign(records, ctx.cfg.cluster, ctx.cfg.seed)
    atomic.write_json(os.path.join(ctx.out, "assignments.json"), assignments.tolist())
    return {"num_clusters": int(len(np.unique(assignments)))}


def _files(cfg) -> list[str]:
    return [cfg.cluster.file] if cfg.cluster.method == "file" else []


STAGE = Stage("cluster", run, reads=("seed", "cluster"), needs=("data",), files=_files)
