"""select: the metric of every training record (from the probe's scores or
from score files), the hardest select.percent % (globally, per cluster or
per length bin, with the guards of lpjax/selection/select.py) and the
baselines, and the audit of what the selection is made of.

Writes metric.json, indices_<subset>.json and subset_<subset>.* for the
selection (named after the metric) and each baseline, audit.json and
hardness_map.png (lpjax/selection/audit.py), summary.json (the audit's and
the hardness-transfer sections) and, with select.compare,
the transfer plots."""
from __future__ import annotations

import os

import numpy as np

from lpjax import atomic
from lpjax.scoring.store import load_any, load_scores
from lpjax.selection import audit, export, metrics, select, transfer
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
    lengths = record_lengths(records, probe)
    subsets = select.build_subsets(metric, s.percent, hard_low, s.metric, assignments, s.part, tuple(s.baselines),
                                   cfg.seed, exclude=dropped or None, lengths=lengths["response"],
                                   tokens=lengths["prompt"] + lengths["response"], stratify=s.stratify,
                                   length_bins=s.length_bins, exclude_hardest=s.exclude_hardest,
                                   mix_random=s.mix_random)
    atomic.write_json(os.path.join(ctx.out, "metric.json"), {"name": s.metric, "score": s.score, "values": metric})
    for name, idx in subsets.items():
        atomic.write_json(os.path.join(ctx.out, f"indices_{name}.json"), idx)
        export.export_subset(records, idx, ctx.out, f"subset_{name}", tuple(s.export_formats))
    transfer_md, compared = "", {}
    if s.compare:
        # Hardness transfer: this selection's metric against other models' on the same records.
        vectors = {"probe" if probe is not None else os.path.basename(os.path.normpath(s.score_files)): metric}
        for i, other in enumerate(s.compare):
            label = os.path.basename(os.path.normpath(other)) or f"compare{i}"
            vectors[label] = compared[label] = metrics.compute_metric(s.metric, scores_of(other, label))
        # Linked from report.md in the workdir, where select/ points here.
        transfer_md = transfer.transfer_report(vectors, tuple(s.percents), hard_low, assignments, s.metric,
                                               plot_dir=ctx.out, link_dir="select")
    tokens = lengths["unit"] == "tokens"
    p0 = np.exp(scores[0]) if s.score == "loss" else scores[0]  # the map's x axis is a perplexity
    found = audit.audit(records, metric, hard_low, subsets[s.metric], metric_name=s.metric, p0=p0,
                        prompt_tokens=lengths["prompt"] if tokens else None,
                        response_tokens=lengths["response"] if tokens else None, cut=lengths["cut"],
                        random_indices=subsets.get("random"), compare=compared or None,
                        length_bins=s.length_bins)
    atomic.write_json(os.path.join(ctx.out, "audit.json"), found)
    chosen = np.zeros(len(records), bool)
    chosen[subsets[s.metric]] = True
    noisy = np.array([bool(r.get("noisy")) for r in records]) if any("noisy" in r for r in records) else None
    audit.plot_hardness_map(p0, metric, chosen, os.path.join(ctx.out, "hardness_map.png"), s.metric,
                            noisy_mask=noisy, hard_is_low=hard_low)
    atomic.write_json(os.path.join(ctx.out, "summary.json"),
                      {"transfer_markdown": transfer_md,
                       "audit_markdown": audit.audit_markdown(found, figure="select/hardness_map.png")})
    return {"subsets": {name: len(idx) for name, idx in subsets.items()},
            "subset_keys": {name: stable_hash(np.asarray(idx).tolist()) for name, idx in subsets.items()},
            "clustered": assignments is not None, "length_unit": lengths["unit"],
            "subset_tokens": {name: int((lengths["prompt"] + lengths["response"])[idx].sum())
                              for name, idx in subsets.items()},
            "findings": found["findings"]}


def record_lengths(records: list[dict], probe) -> dict:
    """Each record's prompt and response length, in the probe's tokens where
    this run's probe tokenized them (its lengths.json), else in characters
    (score files come without a tokenizer), and whether truncation cut the
    response (None where unknown)."""
    path = None if probe is None else os.path.join(probe.dir, "lengths.json")
    if path is not None and os.path.exists(path):
        got = read_json(path)
        return {"unit": "tokens", "prompt": np.asarray(got["prompt_tokens"], np.int64),
                "response": np.asarray(got["response_tokens"], np.int64), "cut": np.asarray(got["cut"], bool)}
    return {"unit": "chars", "prompt": audit.prompt_chars(records).astype(np.int64),
            "response": audit.response_chars(records).astype(np.int64), "cut": None}


def _files(cfg) -> list[str]:
    s = cfg.select
    return [p for p in ((s.score_files if s.scores_from == "files" else ""), *s.compare) if p]


STAGE = Stage("select", run, reads=("seed", "select", "data.template", "data.max_len"),
              needs=("data", "probe", "cluster"), files=_files)
