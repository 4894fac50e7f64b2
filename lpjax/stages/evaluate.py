"""evaluate/<subset>: held-out metrics of the target tuned on one subset
(response loss, perplexity, exact match of greedy answers). Writes
results.json."""
from __future__ import annotations

import os

from flax import nnx

from lpjax import atomic
from lpjax.data.template import build_prompt
from lpjax.models import registry
from lpjax.evaluation.heldout import evaluate_model
from lpjax.stages.common import ENCODE, encode, model_spec, read_split, side_tokenizer
from lpjax.training.checkpoint import load_params
from lpjax.workdir import Stage, StageContext


def run(ctx: StageContext) -> dict:
    cfg, data, target = ctx.cfg, ctx.inputs["data"], ctx.inputs["target"]
    t = cfg.target
    base = ctx.inputs["base"]
    tok = side_tokenizer(t, data, base)
    # The structure alone: the tuned parameters replace every weight, so the
    # pretrained checkpoint is never read.
    graphdef, like = nnx.split(registry.abstract_model(model_spec(t, base), len(tok), t.compute_dtype))
    params = load_params(os.path.join(target.dir, "params"), like)
    test = read_split(data, "test")
    prompts = [build_prompt(r, cfg.data.template, tok) for r in test]
    result = evaluate_model(graphdef, params, tok, test, encode(cfg.data, tok, test), prompts, cfg.evaluate)
    atomic.write_json(os.path.join(ctx.out, "results.json"), result)
    return {k: v for k, v in result.items() if k != "samples"}


# Its own fields, not the whole section: the answers and judge subsections
# (evaluate.answers, evaluate.judge) cannot change held-out metrics.
STAGE = Stage("evaluate", run, reads=("evaluate.max_new_tokens", "evaluate.batch_size", "evaluate.pad_multiple",
                                      "target.model", "target.tokenizer", "target.compute_dtype", *ENCODE),
              needs=("data", "base", "target"))
