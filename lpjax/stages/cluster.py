"""cluster: one cluster id per training record (cluster.method minilm,
file or field), for the per-cluster selection rule. Writes assignments.json;
the summary names the method and, for field, the field and its values in id
order, so a report can name the clusters."""
from __future__ import annotations

import os

import numpy as np

from lpjax import atomic
from lpjax.selection import clusters
from lpjax.stages.common import read_json, read_split
from lpjax.workdir import Stage, StageContext


def run(ctx: StageContext) -> dict:
    records = read_split(ctx.inputs["data"], "train")
    c = ctx.cfg.cluster
    # data.source and the source index only name a record in a DataError
    # (the preflight check has already read every record's field).
    source = ctx.cfg.data.source
    index_path = os.path.join(ctx.inputs["data"].dir, "source_index.json")
    index = read_json(index_path) if c.method == "field" and os.path.exists(index_path) else None
    assignments = clusters.assign(records, c, ctx.cfg.seed, source=source, index=index)
    atomic.write_json(os.path.join(ctx.out, "assignments.json"), assignments.tolist())
    summary = {"num_clusters": int(len(np.unique(assignments))), "method": c.method}
    if c.method == "field":
        summary["field"] = c.field
        summary["values"] = clusters.field_values(records, c.field, source, index)
    return summary


def _files(cfg) -> list[str]:
    return [cfg.cluster.file] if cfg.cluster.method == "file" else []


# data.source names the records in a field's DataError, and cannot change the
# assignments (the data stage's records are an input): runtime, not a read.
STAGE = Stage("cluster", run, reads=("seed", "cluster"), needs=("data",), runtime=("data.source",), files=_files)
