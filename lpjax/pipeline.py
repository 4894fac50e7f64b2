"""The select-then-tune pipeline: which stages run, in which order, on whose outputs.

    (base/<preset>) -> data -> probe -> (cluster) -> select -> target/<subset>
        -> evaluate/<subset>, answers/<subset> -> judge/<selection>-vs-<baseline> -> report

Each stage lives in lpjax/stages/ with the declaration of what its output
depends on; lpjax/workdir.py skips a stage whose output for those inputs
exists and points <workdir>/<stage> at it.
"""
from __future__ import annotations

import os

from absl import logging

from lpjax import atomic
from lpjax.config import Config, is_preset, to_dict
from lpjax.stages import answers, base, cluster, data, evaluate, judge, probe, report, select, target
from lpjax.stages.common import read_json
from lpjax.workdir import StageResult, Workdir, run_metadata


def run(cfg: Config) -> dict:
    """Run (or resume, or skip) every stage of ``cfg``; returns the workdir and the report's path."""
    work = Workdir(cfg.workdir, cfg.store)
    meta = run_metadata(to_dict(cfg))
    atomic.write_json(work.path("run.json"), meta)

    results: dict[str, StageResult] = {}
    d = results["data"] = work.run(data.STAGE, cfg)
    meta["data_fingerprint"] = d.summary["fingerprint"]
    sides = [side for side, used in (("probe", cfg.select.scores_from == "probe"), ("target", cfg.target.enabled))
             if used]
    # Presets start from a base pretrained on the synthetic corpus; checkpoints are already pretrained.
    presets = {side: getattr(cfg, side).model for side in sides
               if cfg.pretrain.enabled and is_preset(getattr(cfg, side).model)}
    by_preset = {m: work.run(base.STAGE, cfg, {}, {"model": m}, name=f"base/{m}") for m in dict.fromkeys(presets.values())}
    bases = {side: by_preset[m] for side, m in presets.items()}
    results.update({f"base/{m}": r for m, r in by_preset.items()})
    p = (work.run(probe.STAGE, cfg, {"data": d, "base": bases.get("probe")}) if cfg.select.scores_from == "probe"
         else None)
    c = work.run(cluster.STAGE, cfg, {"data": d}) if cfg.cluster.method != "none" else None
    s = work.run(select.STAGE, cfg, {"data": d, "probe": p, "cluster": c})
    results.update({k: v for k, v in (("probe", p), ("cluster", c), ("select", s)) if v is not None})

    targets: dict[str, StageResult] = {}
    evaluations: dict[str, StageResult] = {}
    answered: dict[str, StageResult] = {}
    judged: dict[str, StageResult] = {}
    if cfg.target.enabled:
        for name in s.summary["subsets"]:
            indices = read_json(os.path.join(s.dir, f"indices_{name}.json"))
            targets[name] = work.run(target.STAGE, cfg, {"data": d, "base": bases.get("target")},
                                     {"subset": name, "indices": indices}, name=f"target/{name}")
            model_inputs = {"data": d, "base": bases.get("target"), "target": targets[name]}
            if cfg.evaluate.enabled:
                evaluations[name] = work.run(evaluate.STAGE, cfg, model_inputs, {"subset": name},
                                             name=f"evaluate/{name}")
            if cfg.evaluate.answers.test_sets:
                answered[name] = work.run(answers.STAGE, cfg, model_inputs, {"subset": name}, name=f"answers/{name}")
        if cfg.evaluate.judge.backend != "none":
            a = cfg.select.metric
            for b in cfg.evaluate.judge.against:
                judged[b] = work.run(judge.STAGE, cfg, {"answers_a": answered[a], "answers_b": answered[b]},
                                     {"a": a, "b": b}, name=f"judge/{a}-vs-{b}")
    for kind, group in (("target", targets), ("evaluate", evaluations), ("answers", answered)):
        results.update({f"{kind}/{n}": r for n, r in group.items()})
    results.update({f"judge/{cfg.select.metric}-vs-{b}": r for b, r in judged.items()})

    rep = work.run(report.STAGE, cfg, {"data": d, "bases": bases or None, "probe": p, "cluster": c, "select": s,
                                       "targets": targets or None, "evaluations": evaluations or None,
                                       "answers": answered or None, "judgements": judged or None})
    results["report"] = rep
    # The workdir's report is this run's, also when the stage was skipped.
    with open(os.path.join(rep.dir, "report.md"), encoding="utf-8") as f:
        atomic.write_text(work.path("report.md"), f.read())
    work.unlink_others(results)
    meta["stages"] = {name: r.key for name, r in results.items()}
    atomic.write_json(work.path("run.json"), meta)
    logging.info("done: %s", work.path("report.md"))
    return {"workdir": work.root, "report": work.path("report.md"), "stages": results}
