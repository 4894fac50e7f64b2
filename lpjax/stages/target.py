"""target/<subset>: tune the target model on one subset of the training
records (its indices are the stage's parameter, so the same subset under
another selection setting reuses this output).

Writes ckpt/ (Orbax, resumable), params/ (the final weights) and, with
target.export_hf, hf/ (a transformers checkpoint directory)."""
from __future__ import annotations

import os
import time

from flax import nnx

from lpjax.aot import compile_stats
from lpjax.models import hf
from lpjax.stages.common import ENCODE, encode, make_mesh, read_split, side_model
from lpjax.training.checkpoint import STORE_FORMAT, save_params
from lpjax.training.cost import train_flops
from lpjax.training.train import train
from lpjax.workdir import Stage, StageContext


def run(ctx: StageContext) -> dict:
    cfg, data = ctx.cfg, ctx.inputs["data"]
    t = cfg.target
    tok, model = side_model(t, data, ctx.inputs["base"], cfg.seed)
    records = read_split(data, "train")
    examples = [ex for ex in encode(cfg.data, tok, [records[i] for i in ctx.params["indices"]]) if not ex.dropped]
    t0, compiled_before = time.time(), compile_stats()
    params = train(model, examples, t.train, os.path.join(ctx.out, "ckpt"), cfg.seed, log_metrics=ctx.log_metrics,
                   name=f"target[{ctx.params['subset']}]", mesh=make_mesh(cfg.mesh))
    seconds = time.time() - t0
    save_params(os.path.join(ctx.out, "params"), params)
    if t.export_hf:
        nnx.update(model, params)
        hf.save_hf(model, os.path.join(ctx.out, "hf"), tok)
    tokens = sum(len(ex.ids) for ex in examples) * t.train.epochs
    compiling = compile_stats().since(compiled_before).total_seconds
    return {"num_train": len(examples), "cost": {"tokens": tokens, "seconds": seconds,
                                                 "compile_seconds": round(compiling, 1),
                                                 "flops": train_flops(model, tokens)}}


STAGE = Stage("target", run, reads=("seed", "target", *ENCODE), needs=("data", "base"), runtime=("mesh",),
              format=STORE_FORMAT)
