"""Selection alone, without any model: score files (+ clusters) in, selected
indices and records out.

    python -m lpjax.launch --config=configs/select_only.py \\
      --config.data.source=alpaca_data.json \\
      --config.select.score_files=small2large/alpaca-opt-350m \\
      --config.select.compare='("small2large/alpaca-opt-13b",)' --config.select.percent=1

`select.score_files` is a score directory written by lpjax (probe/scores) or
a directory of the authors' epoch-pre.pkl, epoch-1.pkl, ... pickles; it must
belong to exactly these records in this order (checked by fingerprint for
score directories, by count for pickles). Add clusters with
`--config.cluster.method=file --config.cluster.file=clusters.json` (one
int per record) or `--config.cluster.method=minilm`.
"""
from lpjax.config import Config, apply_variant


def get_config(variant: str | None = None) -> Config:
    cfg = Config(workdir="runs/select")
    cfg.data.test_size = 0  # keep every record, in file order, so indices match the score files
    cfg.data.train_tokenizer = False  # no model, no tokenizer
    cfg.data.max_len = 512
    cfg.select.scores_from = "files"
    cfg.select.metric = "lp_app"
    cfg.select.percent = 1.0
    # No target is tuned here: the baselines are subsets to compare and export.
    cfg.select.baselines = ("random", "random_tokens", "longest")
    cfg.target.enabled = cfg.evaluate.enabled = False
    return apply_variant(cfg, variant)
