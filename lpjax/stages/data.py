"""data: load, validate and split the records; train the BPE of preset models.

Writes train.jsonl and test.jsonl (normalized records), source_index.json
(each train record's index in the source) and, with data.train_tokenizer,
tokenizer/."""
from __future__ import annotations

import os

from lpjax import atomic
from lpjax.config import SYNTHETIC
from lpjax.data import formats, split
from lpjax.data.template import build_prompt
from lpjax.data.tokenizer import train_bpe
from lpjax.workdir import Stage, StageContext


def _files(cfg) -> list[str]:
    return [p for p in (cfg.data.source, cfg.data.test_source) if p and p != SYNTHETIC]


def run(ctx: StageContext) -> dict:
    d = ctx.cfg.data
    train, test, source_index = split.load_splits(d, ctx.cfg.seed)
    formats.write_records(train, os.path.join(ctx.out, "train.jsonl"))
    formats.write_records(test, os.path.join(ctx.out, "test.jsonl"))
    if d.train_tokenizer:
        # The BPE only needs representative text: the Alpaca form of every
        # record (a chat template would need the tokenizer being trained).
        texts = [build_prompt(r, "alpaca") + r["output"] for r in train]
        train_bpe(texts, d.vocab_size, os.path.join(ctx.out, "tokenizer"))
    atomic.write_json(os.path.join(ctx.out, "source_index.json"), source_index)
    return {"fingerprint": formats.fingerprint(train), "test_fingerprint": formats.fingerprint(test),
            "num_train": len(train), "num_test": len(test)}


STAGE = Stage("data", run, reads=("seed", "data"), files=_files)
