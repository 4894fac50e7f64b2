"""The select-then-tune pipeline of DESIGN.md §2, one function per stage.

Each stage reads the files earlier stages wrote in the workdir and writes its
own, so any stage can be rerun alone, resumed, or fed from elsewhere.
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from lpjax import evaluate, report, sharding
from lpjax.checkpoint import load_params, save_params
from lpjax.data import formats, synthetic, tokenize
from lpjax.data.template import build_prompt
from lpjax.io_utils import write_json_atomic
from lpjax.models.registry import build_model, model_config
from lpjax.scoring import ScoreStore, make_score_fn, score_examples
from lpjax.selection import metrics, select
from lpjax.stages import Workdir, file_hash, git_revision, package_versions, stable_hash
from lpjax.train import train


def _cfg(c: ml_collections.ConfigDict) -> dict:
    return c.to_dict()


def make_mesh(cfg: ml_collections.ConfigDict):
    mesh = sharding.make_mesh(tuple(cfg.mesh.shape))
    split = mesh.shape["data"] * mesh.shape["fsdp"]
    for name, size in (("probe.train.batch_size", cfg.probe.train.batch_size),
                       ("probe.score_batch_size", cfg.probe.score_batch_size),
                       ("target.train.batch_size", cfg.target.train.batch_size),
                       ("evaluate.batch_size", cfg.evaluate.batch_size)):
        if size % split:
            raise ValueError(f"{name}={size} must be divisible by data x fsdp = {split} (mesh {dict(mesh.shape)})")
    return mesh


# --------------------------------------------------------------------- data
def load_data(cfg: ml_collections.ConfigDict) -> tuple[list[dict], list[dict], list[int]]:
    """(train records, test records, source index of each train record).

    Loading validates every record, so bad input stops the run here, before
    any training."""
    d = cfg.data
    if d.source == "synthetic":
        train_recs, test_recs = synthetic.generate(d.synthetic.num_train, d.test_size, d.synthetic.noise_fraction, cfg.seed)
        return train_recs, test_recs, list(range(len(train_recs)))
    records = formats.load_records(d.source, d.format)
    if d.test_source:
        test_recs = formats.load_records(d.test_source, d.format)
        train_idx = list(range(len(records)))
    else:
        # Carve a seeded held-out split; the train split keeps file order.
        perm = np.random.default_rng(cfg.seed).permutation(len(records))
        held = set(perm[: d.test_size].tolist())
        test_recs = [records[i] for i in sorted(held)]
        train_idx = [i for i in range(len(records)) if i not in held]
    if d.limit:
        train_idx = train_idx[: d.limit]
    return [records[i] for i in train_idx], test_recs, train_idx


def data_inputs(cfg: ml_collections.ConfigDict) -> dict:
    d = cfg.data
    inputs: dict[str, Any] = {"data": _cfg(d), "seed": cfg.seed}
    for field in ("source", "test_source"):
        path = d[field]
        if path and path != "synthetic":
            if not os.path.exists(path):
                raise formats.DataError(f"{path}: no such file or directory")
            inputs[field + "_sha256"] = file_hash(path)
    return inputs


def data_stage(cfg: ml_collections.ConfigDict, out: str) -> dict:
    train_recs, test_recs, source_index = load_data(cfg)
    formats.write_records(train_recs, os.path.join(out, "train.jsonl"))
    formats.write_records(test_recs, os.path.join(out, "test.jsonl"))
    if cfg.data.tokenizer == "train_bpe":
        texts = [build_prompt(r, cfg.data.template) + r["output"] for r in train_recs]
        tokenize.train_tokenizer(texts, cfg.data.vocab_size, os.path.join(out, "tokenizer"))
    write_json_atomic(os.path.join(out, "source_index.json"), source_index)
    return {"fingerprint": formats.fingerprint(train_recs), "test_fingerprint": formats.fingerprint(test_recs),
            "num_train": len(train_recs), "num_test": len(test_recs)}


def read_split(work: Workdir, split: str) -> list[dict]:
    return formats.load_records(work.path("data", f"{split}.jsonl"), "jsonl")


def resolve_tokenizer(cfg: ml_collections.ConfigDict, work: Workdir):
    path = cfg.data.tokenizer
    return tokenize.load_tokenizer(work.path("data", "tokenizer") if path == "train_bpe" else path)


# -------------------------------------------------------------------- probe
def probe_stage(cfg: ml_collections.ConfigDict, work: Workdir, data_summary: dict, out: str) -> dict:
    p = cfg.probe
    tok = resolve_tokenizer(cfg, work)
    records = read_split(work, "train")
    examples = tokenize.encode_all(tok, records, cfg.data.max_len, cfg.data.template)
    model = build_model(model_config(p.model, len(tok)), cfg.seed)
    mesh = make_mesh(cfg)
    graphdef, params0 = nnx.split(model)
    score_fn = make_score_fn(graphdef, mesh)

    score_dir = os.path.join(out, "scores")
    meta = {"model": p.model, "template": cfg.data.template, "max_len": cfg.data.max_len,
            "fingerprint": data_summary["fingerprint"], "rows": "row 0 = before training, row i = after epoch i"}
    if os.path.exists(os.path.join(score_dir, "meta.json")):
        store = ScoreStore.open(score_dir)  # resuming an interrupted probe run
    else:
        store = ScoreStore.create(score_dir, p.train.epochs + 1, len(examples), meta)

    def score_epoch(epoch: int, params) -> None:
        if epoch in store.done_rows():
            return
        loss_sum, count = score_examples(score_fn, params, examples, p.score_batch_size, p.train.pad_multiple)
        store.write_row(epoch, loss_sum, count)
        ppl = store.read("ppl")[epoch]
        logging.info("probe: scored epoch %d, mean ppl %.3f", epoch, float(ppl.mean()))
        work.log_metrics({"stage": "probe_score", "epoch": epoch, "mean_ppl": float(ppl.mean())})

    score_epoch(0, sharding.shard_params(params0, mesh))
    train(model, examples, p.train, os.path.join(out, "ckpt"), cfg.seed, on_epoch_end=score_epoch,
          log_metrics=work.log_metrics, name="probe", mesh=mesh)
    no_response = [i for i, ex in enumerate(examples) if len(ex.ids) <= ex.prompt_len]
    return {"score_dir": score_dir, "num_scored": len(examples), "no_response_tokens": len(no_response),
            "no_response_examples": no_response[:20]}


# ------------------------------------------------------------------- select
def select_stage(cfg: ml_collections.ConfigDict, work: Workdir, out: str) -> dict:
    s = cfg.select
    scores = ScoreStore.open(work.path("probe", "scores")).read(s.score)
    metric = metrics.compute_metric(s.metric, scores)
    records = read_split(work, "train")
    chosen = select.select_hardest(metric, s.percent, metrics.hard_is_low(s.metric))
    subsets = {s.metric: chosen}
    for name in s.baselines:
        if name == "random":
            subsets["random"] = select.select_random(len(records), len(chosen), cfg.seed)
        elif name == "full":
            subsets["full"] = select.select_full(len(records))
        else:
            raise ValueError(f"unknown baseline {name!r}; known: random, full")
    write_json_atomic(os.path.join(out, "metric.json"), {"name": s.metric, "score": s.score, "values": metric})
    for name, idx in subsets.items():
        write_json_atomic(os.path.join(out, f"indices_{name}.json"), idx)
        formats.write_records([records[i] for i in idx], os.path.join(out, f"subset_{name}.jsonl"))
    return {"subsets": {name: len(idx) for name, idx in subsets.items()},
            "subset_keys": {name: stable_hash(np.asarray(idx).tolist()) for name, idx in subsets.items()}}


def read_indices(work: Workdir, name: str) -> list[int]:
    with open(work.path("select", f"indices_{name}.json")) as f:
        return json.load(f)


# ------------------------------------------------------------------- target
def target_stage(cfg: ml_collections.ConfigDict, work: Workdir, subset: str, out: str) -> dict:
    t = cfg.target
    tok = resolve_tokenizer(cfg, work)
    records = read_split(work, "train")
    chosen = [records[i] for i in read_indices(work, subset)]
    examples = tokenize.encode_all(tok, chosen, cfg.data.max_len, cfg.data.template)
    model = build_model(model_config(t.model, len(tok)), cfg.seed)
    params = train(model, examples, t.train, os.path.join(out, "ckpt"), cfg.seed, log_metrics=work.log_metrics,
                   name=f"target[{subset}]", mesh=make_mesh(cfg))
    save_params(os.path.join(out, "params"), params)
    return {"params_dir": os.path.join(out, "params"), "num_train": len(examples)}


def load_target(cfg: ml_collections.ConfigDict, params_dir: str, vocab_size: int):
    """(graphdef, params) of a tuned target."""
    graphdef, like = nnx.split(build_model(model_config(cfg.target.model, vocab_size), cfg.seed))
    return graphdef, load_params(params_dir, like)


# ----------------------------------------------------------------- evaluate
def evaluate_stage(cfg: ml_collections.ConfigDict, work: Workdir, subsets: list[str], out: str) -> dict:
    tok = resolve_tokenizer(cfg, work)
    test = read_split(work, "test")
    results = {}
    for name in subsets:
        graphdef, params = load_target(cfg, work.path("target", name, "params"), len(tok))
        results[name] = evaluate.evaluate_model(graphdef, params, tok, test, cfg)
        logging.info("evaluate[%s]: %s", name, {k: v for k, v in results[name].items() if k != "samples"})
    write_json_atomic(os.path.join(out, "results.json"), results)
    return {"results": {n: {k: v for k, v in r.items() if k != "samples"} for n, r in results.items()}}


# -------------------------------------------------------------------- run
def run(cfg: ml_collections.ConfigDict) -> dict:
    work = Workdir(cfg.workdir)
    run_meta = {"config": cfg.to_dict(), "versions": package_versions(), "git_revision": git_revision(),
                "devices": [str(d) for d in jax.devices()]}
    write_json_atomic(work.path("run.json"), run_meta)

    d_in = data_inputs(cfg)
    data = work.run_stage("data", d_in, lambda out: data_stage(cfg, out))
    run_meta["data_fingerprint"] = data["fingerprint"]
    write_json_atomic(work.path("run.json"), run_meta)

    probe_in = {"data": data["key"], "probe": _cfg(cfg.probe), "max_len": cfg.data.max_len,
                "template": cfg.data.template, "seed": cfg.seed}
    probe = work.run_stage("probe", probe_in, lambda out: probe_stage(cfg, work, data, out))

    sel = work.run_stage("select", {"probe": probe["key"], "select": _cfg(cfg.select), "seed": cfg.seed},
                         lambda out: select_stage(cfg, work, out))

    targets = {}
    for name, subset_key in sel["subset_keys"].items():
        t_in = {"data": data["key"], "subset": subset_key, "target": _cfg(cfg.target),
                "max_len": cfg.data.max_len, "template": cfg.data.template, "seed": cfg.seed}
        targets[name] = work.run_stage(os.path.join("target", name), t_in,
                                       lambda out, name=name: target_stage(cfg, work, name, out))

    ev_in = {"targets": {n: t["key"] for n, t in targets.items()}, "evaluate": _cfg(cfg.evaluate)}
    ev = work.run_stage("evaluate", ev_in, lambda out: evaluate_stage(cfg, work, list(targets), out))

    rep_in = {"evaluate": ev["key"], "select": sel["key"], "probe": probe["key"]}
    work.run_stage("report", rep_in, lambda out: {"path": report.write_report(cfg, work)})
    logging.info("done: %s", work.path("report.md"))
    return {"workdir": work.root, "report": work.path("report.md")}
