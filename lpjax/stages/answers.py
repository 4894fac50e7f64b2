"""answers/<subset>: the target tuned on one subset answers the configured
test sets (evaluate.answers.test_sets), and the judge-free measures of those
answers.

Inputs: ``data`` (the tokenizer of preset models) and ``target`` (its
params/); params ``{"subset": name}``. Writes answers.jsonl (one row per
prompt: set, id, instruction, input, answer, prompt_tokens,
prompt_truncated, answer_tokens, stop; resumable) and metrics.json (per set:
answer lengths, answers cut at max_new_tokens, prompts shortened, and for
sets with references their log-likelihood per token, perplexity and exact
match). Summary: ``num_answers`` and ``sets`` (metrics.json's content)."""
from __future__ import annotations

import os

from lpjax import atomic
from lpjax.evaluation.answer_metrics import reference_loglik, set_metrics
from lpjax.evaluation.answers import generate_answers
from lpjax.evaluation.testsets import load_test_sets, parse_spec
from lpjax.stages.common import make_mesh, tuned_target
from lpjax.workdir import Stage, StageContext

ANSWERS_FILE = "answers.jsonl"


def run(ctx: StageContext) -> dict:
    cfg, data, target = ctx.cfg, ctx.inputs["data"], ctx.inputs["target"]
    a, mesh = cfg.evaluate.answers, make_mesh(cfg.mesh)
    tok, graphdef, params = tuned_target(cfg.target, data, ctx.inputs["base"], target, mesh)
    items = load_test_sets(a.test_sets)
    rows = generate_answers(graphdef, params, tok, items, os.path.join(ctx.out, ANSWERS_FILE),
                            template=cfg.data.template, max_new_tokens=a.max_new_tokens, max_len=a.max_len,
                            batch_size=a.batch_size, pad_multiple=a.pad_multiple, mesh=mesh, log=ctx.log_metrics)
    refs = [item for item in items if item.reference is not None]
    loglik = {}
    if refs:
        total, count = reference_loglik(graphdef, params, tok, refs, template=cfg.data.template, max_len=a.max_len,
                                        batch_size=a.batch_size, pad_multiple=a.pad_multiple, mesh=mesh)
        loglik = {(i.set, i.id): (float(s), float(c)) for i, s, c in zip(refs, total, count)}
    metrics = set_metrics(rows, items, loglik)
    atomic.write_json(os.path.join(ctx.out, "metrics.json"), metrics)
    return {"num_answers": len(rows), "sets": metrics}


def _files(cfg) -> list[str]:
    return [parse_spec(spec).path for spec in cfg.evaluate.answers.test_sets]


STAGE = Stage("answers", run, reads=("evaluate.answers", "target.model", "target.tokenizer", "target.compute_dtype",
                                     "data.template"),
              needs=("data", "base", "target"), runtime=("mesh",), files=_files)
