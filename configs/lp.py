"""LP(1) selection (DESIGN.md §1): three probe epochs, (P0 - P1) / (P0 - P3).

    python -m lpjax.launch --config=configs/lp.py
"""
from lpjax.config import apply_variant, base_config


def get_config(variant: str | None = None):
    cfg = base_config()
    cfg.workdir = "runs/lp"
    cfg.select.metric = "lp1"
    cfg.probe.train.epochs = 3
    return apply_variant(cfg, variant)
