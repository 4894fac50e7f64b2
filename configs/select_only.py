"""Selection alone, without any model: score files (+ clusters) in, selected
indices and records out.

    python -m lpjax.launch --config=configs/select_only.py \\
      --config.data.source=alpaca_data.json \\
      --config.select.scores=small2large/alpaca-opt-350m \\
      --config.select.compare='("small2large/alpaca-opt-13b",)' \\
      --config.select.clusters=clusters.json --config.select.percent=1

`select.scores` is a score directory written by lpjax (probe/scores) or a
directory of the authors' epoch-pre.pkl, epoch-1.pkl, ... pickles; it must
belong to exactly these records in this order (checked by fingerprint for
score directories, by count for pickles).
"""
from lpjax.config import apply_variant, base_config


def get_config(variant: str | None = None):
    cfg = base_config()
    cfg.workdir = "runs/select"
    cfg.stages = ("select",)
    cfg.data.test_size = 0  # keep every record, in file order, so indices match the score files
    cfg.data.tokenizer = ""  # no model, no tokenizer
    cfg.data.max_len = 512
    cfg.select.metric = "lp_app"
    cfg.select.percent = 1.0
    cfg.select.baselines = ("random",)
    return apply_variant(cfg, variant)
