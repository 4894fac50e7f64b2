"""Write a selected subset for other trainers, and count what is in it.

``export_subset`` writes the chosen records as a JSON list (the format of the
authors' released subsets and of Stanford Alpaca), as JSON lines, and as a
``datasets`` dataset on disk (``datasets.load_from_disk``), each atomically:
a reader never sees half a file or half a directory.
(What a selection is made of, duplicates and empty responses included, is
lpjax/selection/audit.py's job.)
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence

import numpy as np

from lpjax import atomic
from lpjax.data.formats import write_records

EXPORT_FORMATS = ("json", "jsonl", "hf")


def _check_indices(indices: Sequence[int], n: int) -> list[int]:
    idx = np.asarray(indices)
    if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
        raise ValueError(f"indices must be a 1-D sequence of integers, got shape {idx.shape} dtype {idx.dtype}")
    idx = idx.astype(np.int64).tolist()
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise ValueError(f"indices out of range for {n} records: {bad[:5]}")
    if len(set(idx)) != len(idx):
        dup = [i for i, c in Counter(idx).items() if c > 1]
        raise ValueError(f"indices repeat: {dup[:5]}")
    return idx


def _columns(records: list[dict], fields: Sequence[str] | None) -> list[str]:
    if fields is not None:
        return list(fields)
    seen: dict[str, None] = {}
    for r in records:
        seen.update(dict.fromkeys(r))
    return list(seen)


def _save_dataset(rows: list[dict], columns: list[str], path: str) -> None:
    import datasets

    datasets.disable_progress_bars()  # a bar per subset drowns the run's own progress lines

    if rows:
        import pyarrow as pa

        try:
            ds, shards = datasets.Dataset.from_list(rows), None
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise ValueError(f"{path}: the selected records do not form one table ({err}); "
                             "export fields=FIELDS (instruction/input/output) instead") from None
    else:
        # from_list([]) has no columns, and an empty dataset is saved as zero
        # shards that load_from_disk cannot read: name string columns, one shard.
        features = datasets.Features({c: datasets.Value("string") for c in columns})
        ds, shards = datasets.Dataset.from_dict({c: [] for c in columns}, features=features), 1
    with atomic.directory(path) as tmp:
        ds.save_to_disk(tmp, num_shards=shards)


def export_subset(
    records: list[dict],
    indices: Sequence[int],
    out_dir: str | os.PathLike,
    stem: str,
    formats: Sequence[str] = EXPORT_FORMATS,
    fields: Sequence[str] | None = None,
) -> dict[str, str]:
    """Write ``records[i] for i in indices`` (in that order) and return {format: path}.

    Paths: ``<out_dir>/<stem>.json`` (a JSON list), ``<stem>.jsonl`` and
    ``<stem>.hf/`` (``datasets.Dataset.save_to_disk``). `fields` picks the
    keys to keep (``FIELDS`` = instruction/input/output gives exactly the
    authors' subset format); None keeps every key, and in the dataset a key
    some records lack is null for them. Existing outputs are replaced.
    """
    unknown = [f for f in formats if f not in EXPORT_FORMATS]
    if unknown:
        raise ValueError(f"unknown export formats {unknown}; expected some of {EXPORT_FORMATS}")
    idx = _check_indices(indices, len(records))
    chosen = [records[i] for i in idx]
    columns = _columns(chosen, fields)
    missing = [(i, f) for i, r in zip(idx, chosen) for f in columns if fields is not None and f not in r]
    if missing:
        raise ValueError(f"record {missing[0][0]} has no field {missing[0][1]!r}")
    rows = [{c: r.get(c) for c in columns} for r in chosen]
    out_dir = os.fspath(out_dir)
    paths = {}
    for fmt in formats:
        path = os.path.join(out_dir, f"{stem}.{fmt}")
        if fmt == "hf":
            _save_dataset(rows, columns, path)
        else:
            # Through a temporary file and a rename. Without `fields`, each
            # record keeps exactly its own keys (no nulls for others' keys).
            write_records(chosen if fields is None else rows, path)
        paths[fmt] = path
    return paths
