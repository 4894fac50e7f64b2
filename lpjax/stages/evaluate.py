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

Like the held-out split, the reference sets are scored on one device (no
mesh): the stage places the tuned parameters nowhere else. The summary is
results.json without the samples."""
from __future__ import annotations

import os

from flax import nnx

from lpjax import atomic
from lpjax.data.template import build_prompt
from lpjax.evaluation.heldout import evaluate_model, evaluate_references
from lpjax.evaluation.testsets import parse_spec
from lpjax.models import registry
from lpjax.stages.common import ENCODE, encode, model_spec, read_split, side_tokenizer
from lpjax.training.checkpoint import load_params
from lpjax.workdir import Stage, StageContext


def run(ctx: StageContext) -> dict:
    cfg, data, target = ctx.cfg, ctx.inputs["data"], ctx.inputs["target"]
    t, e = cfg.target, cfg.evaluate
    base = ctx.inputs["base"]
    tok = side_tokenizer(t, data, base)
    # The structure alone: the tuned parameters replace every weight, so the
    # pretrained checkpoint is never read.
    graphdef, like = nnx.split(registry.abstract_model(model_spec(t, base), len(tok), t.compute_dtype))
    params = load_params(os.path.join(target.dir, "params"), like)
    test = read_split(data, "test")
    prompts = [build_prompt(r, cfg.data.template, tok) for r in test] if e.generate else []
    result = evaluate_model(graphdef, params, tok, test, encode(cfg.data, tok, test), prompts, e)
    if e.reference_sets:
        result["reference_sets"] = evaluate_references(
            graphdef, params, tok, e.reference_sets, limit=e.reference_limit, template=cfg.data.template,
            max_len=cfg.data.max_len, batch_size=e.batch_size, pad_multiple=e.pad_multiple)
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
              needs=("data", "base", "target"), files=_files)
