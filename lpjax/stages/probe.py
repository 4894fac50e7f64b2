"""probe: fine-tune the small model on the training records and score every
record before training and after each epoch (docs/method.md).

Writes scores/ (zarr ppl and loss [epochs + 1, N]), with
probe.score_response_only also scores_response_only/ (IFD's denominator),
lengths.json (each record's prompt and response tokens) and ckpt/ (Orbax;
a killed run resumes from it)."""
from __future__ import annotations

import json
import os
import time

from absl import logging
from flax import nnx

from lpjax import atomic, sharding
from lpjax.aot import compile_stats
from lpjax.config import SCORE_BUDGET_AUTO, SCORE_BUDGET_FIXED
from lpjax.data import tokenize
from lpjax.scoring.score import auto_token_budget, make_score_fn, score_examples
from lpjax.scoring.store import ScoreStore
from lpjax.stages.common import ENCODE, encode, make_mesh, read_split, side_model
from lpjax.training.cost import forward_flops, train_flops
from lpjax.training.checkpoint import STORE_FORMAT
from lpjax.training.train import train
from lpjax.workdir import Stage, StageContext


def run(ctx: StageContext) -> dict:
    cfg, data = ctx.cfg, ctx.inputs["data"]
    p = cfg.probe
    tok, model = side_model(p, data, ctx.inputs["base"], cfg.seed)
    records = read_split(data, "train")
    examples = encode(cfg.data, tok, records)
    # Token lengths as the probe saw them, for the selection audit and the
    # length-aware baselines (longest, random_tokens) of the select stage.
    atomic.write_json(os.path.join(ctx.out, "lengths.json"), token_lengths(examples))
    mesh = make_mesh(cfg.mesh)
    graphdef, params0 = nnx.split(model)
    score_fn = make_score_fn(graphdef, mesh)

    meta = {"model": p.model, "template": cfg.data.template, "max_len": cfg.data.max_len,
            "fingerprint": data.summary["fingerprint"], "rows": "row 0 = before training, row i = after epoch i"}
    params0 = sharding.shard_params(params0, mesh)
    geometry = score_geometry(ctx.out, p, cfg.data.max_len, score_fn, params0, model.cfg, examples)
    options = dict(token_budget=geometry["token_budget"], response_head=p.score_response_head,
                   shared_prefix=p.score_shared_prefix, max_len=cfg.data.max_len)
    # The passes each epoch: the templated samples, and for IFD the responses
    # alone (its denominator).
    passes = {"scores": examples}
    if p.score_response_only:
        passes["scores_response_only"] = tokenize.encode_response_only_all(tok, records, cfg.data.max_len)
    stores = {}
    for name, pass_examples in passes.items():
        score_dir = os.path.join(ctx.out, name)
        if os.path.exists(os.path.join(score_dir, "meta.json")):
            stores[name] = ScoreStore.open(score_dir)  # resuming an interrupted probe run
        else:
            stores[name] = ScoreStore.create(score_dir, p.train.epochs + 1, len(pass_examples), {**meta, "pass": name})

    scoring = {"seconds": 0.0}

    def score_epoch(epoch: int, params) -> None:
        for name, store in stores.items():
            if epoch in store.done_rows():
                continue
            t0, compiled_before = time.time(), compile_stats()
            loss_sum, count = score_examples(score_fn, params, passes[name], p.score_batch_size,
                                             p.train.pad_multiple, **options)
            store.write_row(epoch, loss_sum, count)
            scoring["seconds"] += time.time() - t0
            ppl = store.read("ppl")[epoch]
            logging.info("probe: scored %s of epoch %d, mean ppl %.3f", name, epoch, float(ppl.mean()))
            ctx.log_metrics({"stage": "probe_score", "pass": name, "epoch": epoch, "mean_ppl": float(ppl.mean()),
                             "seconds": time.time() - t0, **compile_stats().since(compiled_before).as_dict()})

    t0, compiled_before_stage = time.time(), compile_stats()
    score_epoch(0, params0)
    train(model, examples, p.train, os.path.join(ctx.out, "ckpt"), cfg.seed, on_epoch_end=score_epoch,
          log_metrics=ctx.log_metrics, name="probe", mesh=mesh)
    train_tokens = sum(len(ex.ids) for ex in examples) * p.train.epochs
    # What selecting cost: training the probe and scoring the data with it.
    # Counted from the work itself, not from what this process did, so a run
    # resumed after a kill reports the same figures (its seconds cover only
    # the resumed part).
    score_tokens = (p.train.epochs + 1) * sum(len(ex.ids) for ex_list in passes.values() for ex in ex_list)
    cost = {"train_tokens": train_tokens, "train_seconds": time.time() - t0 - scoring["seconds"],
            "score_tokens": score_tokens, "score_seconds": scoring["seconds"],
            # Of those seconds, compiling and tracing (a rerun with a warm
            # compilation cache, lpjax.tuning, mostly loads instead).
            "compile_seconds": round(compile_stats().since(compiled_before_stage).total_seconds, 1),
            "flops": train_flops(model, train_tokens) + forward_flops(model, score_tokens)}
    lost = [i for i, ex in enumerate(examples) if tokenize.response_lost(ex)]
    return {"num_scored": len(examples), "score_geometry": geometry, "truncation": tokenize.truncation_stats(examples),
            "response_lost_examples": lost[:20], "dropped": [i for i, ex in enumerate(examples) if ex.dropped],
            "cost": cost}


def token_lengths(examples: list[tokenize.Example]) -> dict:
    """Per record: prompt and response tokens (EOS included) after
    truncation, and whether truncation cut its response."""
    # (The authors' truncation can leave a prompt longer than the sample: no response.)
    return {"prompt_tokens": [min(ex.prompt_len, len(ex.ids)) for ex in examples],
            "response_tokens": [max(ex.response_len, 0) for ex in examples],
            "cut": [tokenize.truncated_response(ex) for ex in examples]}


def score_geometry(out: str, p, max_len: int, score_fn, params, model_cfg, examples) -> dict:
    """The scoring batches' token budget (0 = fixed batches of
    probe.score_batch_size): the explicit setting, or with
    probe.score_token_budget=0 the one measured fastest here
    (scoring.score.auto_token_budget, cached per machine and model). Kept in
    the output's score_geometry.json: a resumed probe scores with the
    geometry the interrupted one chose, whatever this machine would pick."""
    path = os.path.join(out, "score_geometry.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    if p.score_token_budget == SCORE_BUDGET_AUTO:
        geometry = auto_token_budget(score_fn, params, model_cfg, examples, response_head=p.score_response_head,
                                     shared_prefix=p.score_shared_prefix, max_len=max_len)
        logging.info("probe: scoring token budget %d (%s; tokens/s by budget %s)", geometry["token_budget"],
                     geometry["source"], {k: round(v) for k, v in geometry["rates"].items()})
    elif p.score_token_budget == SCORE_BUDGET_FIXED:
        geometry = {"token_budget": 0, "source": "fixed batches", "batch_size": p.score_batch_size}
    else:
        geometry = {"token_budget": p.score_token_budget, "source": "config"}
    atomic.write_json(path, geometry)
    return geometry


STAGE = Stage("probe", run, reads=("seed", "probe", *ENCODE), needs=("data", "base"), runtime=("mesh",),
              format=STORE_FORMAT)
