"""judge/<a>-vs-<b>: a judge compares two targets' answers to the test sets
(lpjax/evaluation/judge/), both orders per question.

Inputs: ``answers_a`` and ``answers_b`` (two answers/<subset> results; a is
the selection's target, b a baseline's); params ``{"a": subset, "b":
subset}``. Replies are cached in ``<store>/judge_cache`` (shared by every
judge stage and setting, so a changed bootstrap count or a rerun sends
nothing). Writes results.json (all figures), verdicts.jsonl (per question)
and unparsed.jsonl (every reply without two scores). Summary: a, b, win,
tie, lose, unparsed, winning_score, win_rate, ci95, flip_rate, per_set (the
same figures per test set), lengths, tokens, requests, judge.

The judge's identity (backend and model name, or a checkpoint's content)
is keyed; where it is served (base_url, or for a local checkpoint the
run's mesh), the API key, concurrency, timeout and retries are not: they
cannot change a reply."""
from __future__ import annotations

import os

from lpjax import atomic
from lpjax.evaluation.answers import read_answers
from lpjax.evaluation.judge import JudgeSettings, judge_pairwise
from lpjax.evaluation.testsets import TestItem
from lpjax.stages.answers import ANSWERS_FILE
from lpjax.stages.common import make_mesh
from lpjax.workdir import Stage, StageContext, Workdir


def status(judge_cfg) -> str:
    """One line for the report on whether and how answers were judged."""
    if judge_cfg.backend == "none":
        return "Judging is off (evaluate.judge.backend=none): no pairwise comparison was run."
    where = f" at {judge_cfg.base_url}" if judge_cfg.backend == "openai" else ""
    return f"Judge: `{judge_cfg.model}` ({judge_cfg.backend}{where}), both orders per question."


def run(ctx: StageContext) -> dict:
    cfg, j = ctx.cfg, ctx.cfg.evaluate.judge
    a = read_answers(os.path.join(ctx.inputs["answers_a"].dir, ANSWERS_FILE))
    b = {(r["set"], r["id"]): r for r in read_answers(os.path.join(ctx.inputs["answers_b"].dir, ANSWERS_FILE))}
    if set(b) != {(r["set"], r["id"]) for r in a}:
        raise ValueError(f"answers of {ctx.params['a']!r} and {ctx.params['b']!r} are to different prompts")
    items = [TestItem(r["id"], r["instruction"], r["input"], None, r["set"]) for r in a]
    # A local checkpoint judges on the run's mesh, as the answers were decoded.
    mesh = make_mesh(cfg.mesh) if j.backend == "lpjax" else None
    result = judge_pairwise(items, [r["answer"] for r in a], [b[(r["set"], r["id"])]["answer"] for r in a],
                            Workdir(cfg.workdir, cfg.store).store, JudgeSettings.from_config(j, seed=cfg.seed),
                            mesh=mesh)
    figures = {"a": ctx.params["a"], "b": ctx.params["b"], **result.to_dict()}
    verdicts, unparsed = figures.pop("verdicts"), figures.pop("unparsed_replies")
    atomic.write_json(os.path.join(ctx.out, "results.json"), figures)
    atomic.write_jsonl(os.path.join(ctx.out, "verdicts.jsonl"), verdicts)
    atomic.write_jsonl(os.path.join(ctx.out, "unparsed.jsonl"), unparsed)
    return figures


def _files(cfg) -> list[str]:
    j = cfg.evaluate.judge
    return [j.model] if j.backend == "lpjax" else []


JUDGE = "evaluate.judge"
STAGE = Stage("judge", run,
              reads=("seed", *(f"{JUDGE}.{f}" for f in ("backend", "model", "temperature", "max_tokens", "bootstrap"))),
              needs=("answers_a", "answers_b"),
              runtime=("workdir", "store", "mesh",
                       *(f"{JUDGE}.{f}" for f in ("base_url", "api_key_env", "concurrency", "timeout", "max_retries"))),
              files=_files)
