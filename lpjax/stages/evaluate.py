"""evaluate/<subset>: held-out metrics of the target tuned on one subset.
Writes results.json:

- the held-out split: ``num_examples``, ``loss`` (token-weighted response
  loss), ``mean_ppl``, ``by_length`` (the same by response length,
  lpjax/evaluation/heldout.py ``loss_by_length``), and with
  ``evaluate.generate`` ``exact_match`` (+ ``exact_match_by_kind``) of
  greedy answers and a few ``samples``;
- with ``evaluate.reference_sets``: ``reference_sets`` {name: {num, tokens,
  loss, mean_ppl, by_length}}, the response loss of each set's reference
  answers (the first ``evaluate.reference_limit`` that have one), nothing
  generated.

Everything runs on the run's mesh (``mesh``, runtime: it cannot change a
result): the tuned parameters are placed by lpjax/sharding.py's rules
(lpjax/stages/common.py ``tuned_target``), each batch's rows split over
data x fsdp (``evaluate.batch_size`` divides by it). The summary is
results.json without the samples."""
from __future__ import annotations

import os

from lpjax import atomic
from lpjax.data.template import build_prompt
from lpjax.evaluation.heldout import evaluate_model, evaluate_references
from lpjax.evaluation.testsets import parse_spec
from lpjax.stages.common import ENCODE, encode, make_mesh, read_split, tuned_target
from lpjax.workdir import Stage, StageContext


def run(ctx: StageContext) -> dict:
    cfg, data, target = ctx.cfg, ctx.inputs["data"], ctx.inputs["target"]
    e, mesh = cfg.evaluate, make_mesh(cfg.mesh)
    tok, graphdef, params = tuned_target(cfg.target, data, ctx.inputs["base"], target, mesh)
    test = read_split(data, "test")
    prompts = [build_prompt(r, cfg.data.template, tok) for r in test] if e.generate else []
    result = evaluate_model(graphdef, params, tok, test, encode(cfg.data, tok, test), prompts, e, mesh=mesh)
    if e.reference_sets:
        result["reference_sets"] = evaluate_references(
            graphdef, params, tok, e.reference_sets, limit=e.reference_limit, template=cfg.data.template,
            max_len=cfg.data.max_len, batch_size=e.batch_size, pad_multiple=e.pad_multiple, mesh=mesh)
    atomic.write_json(os.path.join(ctx.out, "results.json"), result)
    return {k: v for k, v in result.items() if k != "samples"}


def _files(cfg) -> list[str]:
    """The reference sets' files: their contents are inputs of the results."""
    return [parse_spec(spec).path for spec in cfg.evaluate.reference_sets]


# Its own fields, not the whole section: the answers and judge subsections
# (evaluate.answers, evaluate.judge) cannot change held-out metrics.
STAGE = Stage("evaluate", run, reads=("evaluate.generate", "evaluate.max_new_tokens", "evaluate.batch_size",
                                      "evaluate.pad_multiple", "evaluate.reference_sets", "evaluate.reference_limit",
                                      "target.model", "target.tokenizer", "target.compute_dtype", *ENCODE),
              needs=("data", "base", "target"), runtime=("mesh",), files=_files)
