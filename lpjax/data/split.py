"""The training and held-out records of a run, from the data config."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from lpjax.config import SYNTHETIC, DataConfig
from lpjax.data import formats, synthetic


# The last split loaded, by its inputs: the preflight check loads and
# validates the records, and the data stage reuses them instead of parsing
# a 1M-record file twice.
_LAST: dict[Any, tuple[list[dict], list[dict], list[int]]] = {}


def _stamp(path: str) -> Any:
    if not path or path == SYNTHETIC or not os.path.exists(path):
        return path
    st = os.stat(path)
    return (path, st.st_size, st.st_mtime_ns)


def load_splits(d: DataConfig, seed: int) -> tuple[list[dict], list[dict], list[int]]:
    """(train records, held-out records, source index of each train record);
    see _load_splits. Loaded once per process for the same inputs."""
    key = (repr(d), seed, _stamp(d.source), _stamp(d.test_source))
    if key not in _LAST:
        _LAST.clear()
        _LAST[key] = _load_splits(d, seed)
    train, test, index = _LAST[key]
    return list(train), list(test), list(index)


def _load_splits(d: DataConfig, seed: int) -> tuple[list[dict], list[dict], list[int]]:
    """(train records, held-out records, source index of each train record).

    The held-out split is ``d.test_source``, or ``d.test_size`` records
    drawn from the source with ``seed``; the training split keeps file
    order (so score files and indices line up with the source), cut to its
    first ``d.limit`` records when set. Loading validates every record, so
    bad input stops the run here, before any training."""
    if d.source == SYNTHETIC:
        train, test = synthetic.generate(d.synthetic.num_train, d.test_size, d.synthetic.noise_fraction, seed,
                                         families=d.synthetic.families)
        return train, test, list(range(len(train)))
    records = formats.load_records(d.source, d.format)
    if d.test_source:
        test = formats.load_records(d.test_source, d.format)
        train_idx = list(range(len(records)))
    else:
        held = set(np.random.default_rng(seed).permutation(len(records))[: d.test_size].tolist())
        test = [records[i] for i in sorted(held)]
        train_idx = [i for i in range(len(records)) if i not in held]
    if d.limit:
        train_idx = train_idx[: d.limit]
    return [records[i] for i in train_idx], test, train_idx
