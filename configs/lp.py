"""LP(1) selection (docs/method.md): three probe epochs, (P0 - P1) / (P0 - P3),
the hardest 10 % of every cluster.

    python -m lpjax.launch --config=configs/lp.py
"""
from lpjax.config import Config, apply_variant, embedded_clusters


def get_config(variant: str | None = None) -> Config:
    cfg = Config(workdir="runs/lp")
    cfg.select.metric = "lp1"
    cfg.probe.train.epochs = 3
    embedded_clusters(cfg)
    return apply_variant(cfg, variant)
