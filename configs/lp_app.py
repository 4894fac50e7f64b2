"""LP_app selection (docs/method.md): one probe epoch, (P0 - P1) / P0, the
hardest 10 % of every cluster (the paper's rule).

    python -m lpjax.launch --config=configs/lp_app.py [--config.workdir=W]
    python -m lpjax.launch --config=configs/lp_app.py:micro   # seconds, for tests
"""
from lpjax.config import Config, apply_variant, embedded_clusters


def get_config(variant: str | None = None) -> Config:
    cfg = Config(workdir="runs/lp_app")
    cfg.select.metric = "lp_app"
    # The cheap variant: P1 from a 1-epoch run. For P1 taken after epoch 1 of
    # a 3-epoch cosine run (the authors' released subsets), set
    # --config.probe.train.epochs=3.
    cfg.probe.train.epochs = 1
    embedded_clusters(cfg)
    return apply_variant(cfg, variant)
