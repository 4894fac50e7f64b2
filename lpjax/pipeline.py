"""The select-then-tune pipeline: which stages run, in which order, on whose outputs.

    (base/<preset>) -> data -> probe -> (cluster) -> select -> target/<subset>
        -> evaluate/<subset>, answers/<subset> -> judge/<selection>-vs-<baseline> -> report

Each stage lives in lpjax/stages/ with the declaration of what its output
depends on; lpjax/workdir.py skips a stage whose output for those inputs
exists and points <workdir>/<stage> at it.

The stages before select (the *front*) are written once, in ``front``: the
run steps through them with ``Workdir.run``, a sweep's dry run
(launch/plan.py) with ``stage_key`` alone (``front_keys``), so both key
them alike. ``model_sides`` is the one rule for which models a run loads
(also what lpjax/preflight.py checks).
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

from absl import logging

from lpjax import atomic, preflight
from lpjax.config import Config, to_dict
from lpjax.models.registry import is_preset
from lpjax.stages import answers, base, cluster, data, evaluate, judge, probe, report, select, target
from lpjax.stages.common import read_json
from lpjax.workdir import Inputs, Stage, StageResult, Workdir, run_metadata, stage_key

# step(stage, inputs, params, name) -> its result: runs the stage, or only keys it.
Step = Callable[[Stage, Inputs, Mapping[str, Any], str], StageResult]


def model_sides(cfg: Config) -> list[str]:
    """The sections whose model this run loads, in order: ``probe`` when
    select scores from it (``select.scores_from == "probe"``), ``target``
    when targets are tuned (``target.enabled``)."""
    return [side for side, used in (("probe", cfg.select.scores_from == "probe"), ("target", cfg.target.enabled))
            if used]


@dataclasses.dataclass(frozen=True)
class Front:
    """The stages up to select, as run (or only keyed, with no directory or summary)."""

    data: StageResult
    bases: dict[str, StageResult]  # side -> its pretrained base (preset sides with pretrain.enabled)
    probe: StageResult | None  # None with score files
    cluster: StageResult | None  # None with cluster.method=none
    select: StageResult

    def results(self) -> dict[str, StageResult]:
        """{stage name: result} in the order the stages ran: data, base/<preset>..., probe, cluster, select."""
        out = {"data": self.data, **{b.name: b for b in self.bases.values()}}
        out.update({k: v for k, v in (("probe", self.probe), ("cluster", self.cluster), ("select", self.select))
                    if v is not None})
        return out


def front(cfg: Config, step: Step) -> Front:
    """Walk the stages before the targets (data, base/<preset>, probe,
    cluster, select) in order, each with its inputs and parameters, through
    ``step``. The walk reads nothing a stage wrote (a dry run's results
    have no output), only the config and the results' keys."""
    d = step(data.STAGE, {}, {}, "data")
    sides = model_sides(cfg)
    # Presets start from a base pretrained on the synthetic corpus; checkpoints are already pretrained.
    presets = {side: getattr(cfg, side).model for side in sides
               if cfg.pretrain.enabled and is_preset(getattr(cfg, side).model)}
    by_preset = {m: step(base.STAGE, {}, {"model": m}, f"base/{m}") for m in dict.fromkeys(presets.values())}
    bases = {side: by_preset[m] for side, m in presets.items()}
    p = step(probe.STAGE, {"data": d, "base": bases.get("probe")}, {}, "probe") if "probe" in sides else None
    c = step(cluster.STAGE, {"data": d}, {}, "cluster") if cfg.cluster.method != "none" else None
    s = step(select.STAGE, {"data": d, "probe": p, "cluster": c}, {}, "select")
    return Front(d, bases, p, c, s)


def front_keys(cfg: Config) -> tuple[dict[str, str], list[str]]:
    """({stage name: key}, [input files that do not exist]) of the front,
    keyed as ``run`` keys it (``stage_key``), without running anything: a
    sweep's dry run. A missing file is keyed as empty content."""
    keys: dict[str, str] = {}
    missing: set[str] = set()

    def plan(stage: Stage, inputs: Inputs, params: Mapping[str, Any], name: str) -> StageResult:
        missing.update(p for p in stage.files(cfg) if not os.path.exists(p))
        keys[name], _ = stage_key(stage, cfg, inputs, params, name)
        return StageResult(name, keys[name], "", {})

    front(cfg, plan)
    return keys, sorted(missing)


def run(cfg: Config, checked: bool = False) -> dict:
    """Run (or resume, or skip) every stage of ``cfg``; returns the workdir and the report's path.

    Every input is checked first (lpjax/preflight.py; ``checked``: the caller
    already did): a run that cannot work raises a UserError before anything
    is written."""
    if not checked:
        preflight.check(cfg)
    work = Workdir(cfg.workdir, cfg.store)
    meta = run_metadata(to_dict(cfg))
    atomic.write_json(work.path("run.json"), meta)

    f = front(cfg, lambda stage, inputs, params, name: work.run(stage, cfg, inputs, params, name=name))
    meta["data_fingerprint"] = f.data.summary["fingerprint"]
    results = f.results()
    d, bases, p, c, s = f.data, f.bases, f.probe, f.cluster, f.select

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
