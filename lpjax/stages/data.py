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
    return _files_of(cfg.data)


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
            "num_train": len(train), "num_test": len(test), "input_checks": input_checks(d, train, test)}


def input_checks(d, train: list[dict], test: list[dict]) -> dict:
    """What the loader accepted that a user may want to know about: a
    byte-order mark, fields beyond instruction/input/output, exact
    duplicates, the largest record, empty responses (report.md lists them)."""
    seen: set[str] = set()
    duplicates = 0
    for r in train:
        core = atomic.dumps([r[k] for k in formats.FIELDS], None)
        duplicates += core in seen
        seen.add(core)
    extra = sorted({k for r in train for k in r if k not in formats.FIELDS})
    sizes = [len(atomic.dumps(r, None).encode("utf-8", "surrogatepass")) for r in train + test]
    return {
        "bom": [p for p in _files_of(d) if formats.has_bom(p)],
        "extra_fields": extra[:20],
        "duplicates": duplicates,
        "largest_record_bytes": max(sizes, default=0),
        "empty_responses": sum(not r["output"].strip() for r in train),
        "num_train": len(train),
    }


def _files_of(d) -> list[str]:
    return [p for p in (d.source, d.test_source) if p and p != SYNTHETIC]


STAGE = Stage("data", run, reads=("seed", "data"), files=_files)
