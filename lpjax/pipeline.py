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

from lpjax import report, sharding
from lpjax.evaluation import heldout as evaluate
from lpjax.training.checkpoint import load_params, save_params
from lpjax.data import formats, synthetic, tokenize
from lpjax.data.template import build_prompt
from lpjax import atomic
from lpjax.models import hf, registry
from lpjax.scoring.score import make_score_fn, score_examples
from lpjax.scoring.store import ScoreStore
from lpjax.scoring import store as score_io
from lpjax.selection import export, metrics, select, transfer
from lpjax.stages import Workdir, file_hash, git_revision, package_versions, stable_hash
from lpjax.training.train import train


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
    atomic.write_json(os.path.join(out, "source_index.json"), source_index)
    return {"fingerprint": formats.fingerprint(train_recs), "test_fingerprint": formats.fingerprint(test_recs),
            "num_train": len(train_recs), "num_test": len(test_recs)}


def read_split(work: Workdir, split: str) -> list[dict]:
    return formats.load_records(work.path("data", f"{split}.jsonl"), "jsonl")


def tokenizer_dir(cfg: ml_collections.ConfigDict, work: Workdir, side: str) -> str:
    """Each side tokenizes with its own tokenizer: an explicit
    `<side>.tokenizer`, else the checkpoint's, else the data's (the BPE
    trained on the embedded data, or data.tokenizer)."""
    m = cfg[side]
    if m.tokenizer:
        return m.tokenizer
    if (path := registry.tokenizer_path(m.model)) is not None:
        return path
    if cfg.data.tokenizer == "train_bpe":
        return work.path("data", "tokenizer")
    if cfg.data.tokenizer:
        return cfg.data.tokenizer
    raise ValueError(f"{side}.model={m.model!r} is a preset: set {side}.tokenizer or data.tokenizer")


def side_model(cfg: ml_collections.ConfigDict, work: Workdir, side: str):
    """(tokenizer, model) of the probe or the target."""
    tok = registry.load_tokenizer(tokenizer_dir(cfg, work, side))
    model = registry.load_model(cfg[side].model, len(tok), cfg.seed, cfg[side].compute_dtype)
    return tok, model


def encode(cfg: ml_collections.ConfigDict, tok, records: list[dict]):
    return tokenize.encode_all(tok, records, cfg.data.max_len, cfg.data.template, cfg.data.truncation)


# -------------------------------------------------------------------- probe
def probe_stage(cfg: ml_collections.ConfigDict, work: Workdir, data_summary: dict, out: str) -> dict:
    p = cfg.probe
    tok, model = side_model(cfg, work, "probe")
    records = read_split(work, "train")
    examples = encode(cfg, tok, records)
    mesh = make_mesh(cfg)
    graphdef, params0 = nnx.split(model)
    score_fn = make_score_fn(graphdef, mesh)

    meta = {"model": p.model, "template": cfg.data.template, "max_len": cfg.data.max_len,
            "fingerprint": data_summary["fingerprint"], "rows": "row 0 = before training, row i = after epoch i"}
    options = dict(token_budget=p.score_token_budget, response_head=p.score_response_head,
                   shared_prefix=p.score_shared_prefix, max_len=cfg.data.max_len)
    # The passes each epoch: the templated samples, and for IFD the responses
    # alone (its denominator).
    passes = {"scores": examples}
    if metrics.needs_response_only(cfg.select.metric):
        passes["scores_response_only"] = tokenize.encode_response_only_all(tok, records, cfg.data.max_len)
    stores = {}
    for name, pass_examples in passes.items():
        score_dir = os.path.join(out, name)
        if os.path.exists(os.path.join(score_dir, "meta.json")):
            stores[name] = ScoreStore.open(score_dir)  # resuming an interrupted probe run
        else:
            stores[name] = ScoreStore.create(score_dir, p.train.epochs + 1, len(pass_examples),
                                             {**meta, "pass": name})

    def score_epoch(epoch: int, params) -> None:
        for name, store in stores.items():
            if epoch in store.done_rows():
                continue
            loss_sum, count = score_examples(score_fn, params, passes[name], p.score_batch_size,
                                             p.train.pad_multiple, **options)
            store.write_row(epoch, loss_sum, count)
            ppl = store.read("ppl")[epoch]
            logging.info("probe: scored %s of epoch %d, mean ppl %.3f", name, epoch, float(ppl.mean()))
            work.log_metrics({"stage": "probe_score", "pass": name, "epoch": epoch, "mean_ppl": float(ppl.mean())})

    score_epoch(0, sharding.shard_params(params0, mesh))
    train(model, examples, p.train, os.path.join(out, "ckpt"), cfg.seed, on_epoch_end=score_epoch,
          log_metrics=work.log_metrics, name="probe", mesh=mesh)
    lost = [i for i, ex in enumerate(examples) if tokenize.response_lost(ex)]
    return {"score_dir": os.path.join(out, "scores"), "num_scored": len(examples), "truncation": tokenize.truncation_stats(examples),
            "truncation_policy": cfg.data.truncation, "response_lost_examples": lost[:20],
            "dropped": [i for i, ex in enumerate(examples) if ex.dropped]}


# ------------------------------------------------------------------ cluster
def cluster_stage(cfg: ml_collections.ConfigDict, work: Workdir, out: str) -> dict:
    """Cluster assignments of the training records: MiniLM embeddings +
    k-means (DESIGN.md §1), or a user's file of integers."""
    s = cfg.select
    records = read_split(work, "train")
    if s.clusters == "minilm":
        from lpjax.embed import kmeans, minilm

        emb = minilm.embed_records(records, model_dir=s.embed_model or None)
        assignments, _ = kmeans.kmeans(emb, min(s.num_clusters, len(records)), cfg.seed)
    else:
        assignments = read_cluster_file(s.clusters, len(records))
    atomic.write_json(os.path.join(out, "assignments.json"), np.asarray(assignments).tolist())
    return {"num_clusters": int(len(set(np.asarray(assignments).tolist())))}


def read_cluster_file(path: str, n: int) -> np.ndarray:
    """A JSON list of ints, or a text file with one int per line."""
    with open(path) as f:
        text = f.read()
    try:
        values = json.loads(text) if text.lstrip().startswith("[") else [int(v) for v in text.split()]
    except ValueError as e:
        raise formats.DataError(f"{path}: not a list of cluster ids ({e})") from e
    if len(values) != n or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise formats.DataError(f"{path}: expected {n} integer cluster ids, got {len(values)} values")
    return np.asarray(values, np.int64)


# ------------------------------------------------------------------- select
def load_selection_scores(cfg: ml_collections.ConfigDict, work: Workdir, source: str, fingerprint: str, out: str,
                          name: str) -> np.ndarray:
    """Scores [epochs+1, N] from the probe stage ("" = this run's probe), a
    score directory, or a directory of the authors' pickles (imported into
    a score directory first, so there is one format everywhere)."""
    kind = cfg.select.score
    if not source:
        return score_io.load_scores(work.path("probe", "scores"), fingerprint, kind)[0]
    if not os.path.exists(os.path.join(source, "meta.json")):
        dst = os.path.join(out, "imported", name)
        score_io.import_scores(source, dst, fingerprint, {"model": name, "template": cfg.data.template,
                                                           "max_len": cfg.data.max_len, "source": source},
                               overwrite=True)
        source = dst
    return score_io.load_scores(source, fingerprint, kind)[0]


def select_stage(cfg: ml_collections.ConfigDict, work: Workdir, data_summary: dict, out: str) -> dict:
    s = cfg.select
    fp = data_summary["fingerprint"]
    records = read_split(work, "train")
    scores = load_selection_scores(cfg, work, s.scores, fp, out, "probe")
    alone = None
    if metrics.needs_response_only(s.metric):
        if s.scores:
            raise ValueError(f"select.metric={s.metric!r} needs this run's probe (it scores responses alone); "
                             "imported scores have no such pass")
        alone = score_io.load_scores(work.path("probe", "scores_response_only"), fp, s.score)[0]
    metric = metrics.compute_metric(s.metric, scores, response_only=alone)
    # truncation=drop: samples whose response does not fit leave the pool.
    dropped = [] if s.scores else stage_summary(work, "probe")["dropped"]
    clusters = None
    if s.clusters != "none":
        with open(work.path("cluster", "assignments.json")) as f:
            clusters = np.asarray(json.load(f), np.int64)
    subsets = select.build_subsets(metric, s.percent, metrics.hard_is_low(s.metric), s.metric, clusters, s.part,
                                   tuple(s.baselines), cfg.seed, exclude=dropped or None)
    atomic.write_json(os.path.join(out, "metric.json"), {"name": s.metric, "score": s.score, "values": metric})
    for name, idx in subsets.items():
        atomic.write_json(os.path.join(out, f"indices_{name}.json"), idx)
        export.export_subset(records, idx, out, f"subset_{name}", tuple(s.export_formats))
    stats = export.pool_stats(records, subsets[s.metric])
    transfer_md = ""
    if s.compare:
        # Hardness transfer: this probe's metric against other models' on the same records.
        vectors = {"probe": metric}
        for i, other in enumerate(s.compare):
            label = os.path.basename(os.path.normpath(other)) or f"compare{i}"
            vectors[label] = metrics.compute_metric(s.metric, load_selection_scores(cfg, work, other, fp, out, label))
        transfer_md = transfer.transfer_report(vectors, tuple(s.percents), metrics.hard_is_low(s.metric), clusters,
                                               s.metric, plot_dir=out, report_dir=work.root)
    atomic.write_json(os.path.join(out, "summary.json"), {"pool_stats": stats, "transfer_markdown": transfer_md})
    return {"subsets": {name: len(idx) for name, idx in subsets.items()},
            "subset_keys": {name: stable_hash(np.asarray(idx).tolist()) for name, idx in subsets.items()},
            "clustered": clusters is not None}


def stage_summary(work: Workdir, name: str) -> dict:
    with open(work.path(name, "stage.json")) as f:
        return json.load(f)["summary"]


def read_indices(work: Workdir, name: str) -> list[int]:
    with open(work.path("select", f"indices_{name}.json")) as f:
        return json.load(f)


# ------------------------------------------------------------------- target
def target_stage(cfg: ml_collections.ConfigDict, work: Workdir, subset: str, out: str) -> dict:
    t = cfg.target
    tok, model = side_model(cfg, work, "target")
    records = read_split(work, "train")
    examples = encode(cfg, tok, [records[i] for i in read_indices(work, subset)])
    examples = [ex for ex in examples if not ex.dropped]
    params = train(model, examples, t.train, os.path.join(out, "ckpt"), cfg.seed, log_metrics=work.log_metrics,
                   name=f"target[{subset}]", mesh=make_mesh(cfg))
    save_params(os.path.join(out, "params"), params)
    if t.export_hf:
        # The tuned target as a Hugging Face directory that transformers opens.
        nnx.update(model, params)
        hf.save_hf(model, os.path.join(out, "hf"), tok)
    return {"params_dir": os.path.join(out, "params"), "num_train": len(examples)}


def load_target(cfg: ml_collections.ConfigDict, work: Workdir, params_dir: str):
    """(tokenizer, graphdef, params) of a tuned target."""
    tok, model = side_model(cfg, work, "target")
    graphdef, like = nnx.split(model)
    return tok, graphdef, load_params(params_dir, like)


# ----------------------------------------------------------------- evaluate
def evaluate_stage(cfg: ml_collections.ConfigDict, work: Workdir, subsets: list[str], out: str) -> dict:
    test = read_split(work, "test")
    results = {}
    for name in subsets:
        tok, graphdef, params = load_target(cfg, work, work.path("target", name, "params"))
        results[name] = evaluate.evaluate_model(graphdef, params, tok, test, cfg)
        logging.info("evaluate[%s]: %s", name, {k: v for k, v in results[name].items() if k != "samples"})
    atomic.write_json(os.path.join(out, "results.json"), results)
    return {"results": {n: {k: v for k, v in r.items() if k != "samples"} for n, r in results.items()}}


# -------------------------------------------------------------------- run
def run(cfg: ml_collections.ConfigDict) -> dict:
    work = Workdir(cfg.workdir)
    run_meta = {"config": cfg.to_dict(), "versions": package_versions(), "git_revision": git_revision(),
                "devices": [str(d) for d in jax.devices()]}
    atomic.write_json(work.path("run.json"), run_meta)

    d_in = data_inputs(cfg)
    data = work.run_stage("data", d_in, lambda out: data_stage(cfg, out))
    run_meta["data_fingerprint"] = data["fingerprint"]
    atomic.write_json(work.path("run.json"), run_meta)

    encode_cfg = {k: cfg.data[k] for k in ("max_len", "template", "truncation")}
    probe = {"key": None}
    if not cfg.select.scores:
        probe_in = {"data": data["key"], "probe": _cfg(cfg.probe), "encode": encode_cfg, "seed": cfg.seed,
                    "response_only_pass": metrics.needs_response_only(cfg.select.metric)}
        probe = work.run_stage("probe", probe_in, lambda out: probe_stage(cfg, work, data, out))

    cluster = {"key": None}
    if cfg.select.clusters != "none":
        c_in = {"data": data["key"], "seed": cfg.seed,
                **{k: cfg.select[k] for k in ("clusters", "num_clusters", "embed_model")}}
        if cfg.select.clusters != "minilm":
            c_in["file_sha256"] = file_hash(cfg.select.clusters)
        cluster = work.run_stage("cluster", c_in, lambda out: cluster_stage(cfg, work, out))

    sel_in = {"data": data["key"], "probe": probe["key"], "cluster": cluster["key"], "select": _cfg(cfg.select),
              "seed": cfg.seed, "external": [file_hash(p) for p in (cfg.select.scores, *cfg.select.compare) if p]}
    sel = work.run_stage("select", sel_in, lambda out: select_stage(cfg, work, data, out))
    if "target" not in cfg.stages:
        work.run_stage("report", {"select": sel["key"]}, lambda out: {"path": report.write_report(cfg, work)})
        return {"workdir": work.root, "report": work.path("report.md")}

    targets = {}
    for name, subset_key in sel["subset_keys"].items():
        t_in = {"data": data["key"], "subset": subset_key, "target": _cfg(cfg.target), "encode": encode_cfg,
                "seed": cfg.seed}
        targets[name] = work.run_stage(os.path.join("target", name), t_in,
                                       lambda out, name=name: target_stage(cfg, work, name, out))

    rep_in = {"select": sel["key"], "probe": probe["key"], "targets": {n: t["key"] for n, t in targets.items()}}
    if "evaluate" in cfg.stages:
        ev_in = {"targets": rep_in["targets"], "evaluate": _cfg(cfg.evaluate)}
        rep_in["evaluate"] = work.run_stage("evaluate", ev_in,
                                            lambda out: evaluate_stage(cfg, work, list(targets), out))["key"]
    work.run_stage("report", rep_in, lambda out: {"path": report.write_report(cfg, work)})
    logging.info("done: %s", work.path("report.md"))
    return {"workdir": work.root, "report": work.path("report.md")}
