"""Cluster assignments of the training records, for per-cluster selection:
MiniLM embeddings + k-means (docs/method.md, Clusters), a user's file, or
the values of a record field (Dolly's ``category``, the embedded data's
``kind``, any user label)."""
from __future__ import annotations

import json

import numpy as np

from lpjax.config import ClusterConfig
from lpjax.errors import DataError


def read_cluster_file(path: str, n: int) -> np.ndarray:
    """A JSON list of ints, or a text file with one int per line; n of
    them, each >= 0. A bad file raises DataError naming the bad entry."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text (byte {e.start}); expected a JSON list of ints or one int per "
                              "line") from None
    if text.lstrip().startswith("["):
        try:
            values = json.loads(text)
        except ValueError as e:
            raise DataError(path, f"not a JSON list of cluster ids ({e})") from None
    else:
        values = []
        for i, token in enumerate(text.split(), start=1):
            try:
                values.append(int(token))
            except ValueError:
                raise DataError(path, f"{token[:40]!r} is not an integer cluster id", i) from None
    if not isinstance(values, list):
        raise DataError(path, f"expected a list of cluster ids, got {type(values).__name__}")
    for i, v in enumerate(values, start=1):
        # bool is an int subclass, and 1.0 is not an id: both are a bug upstream.
        if isinstance(v, bool) or not isinstance(v, int):
            raise DataError(path, f"cluster ids must be integers, got {v!r}", i)
        if v < 0:
            raise DataError(path, f"cluster ids must be >= 0, got {v}", i)
    if len(values) != n:
        raise DataError(path, f"expected {n} cluster ids, one per training record, got {len(values)}")
    return np.asarray(values, np.int64)


def _field_value(record: dict, field: str, source: str, number: int) -> str:
    value = record.get(field)
    if value is None:
        what = f"the {field!r} field is null" if field in record else f"no {field!r} field"
        raise DataError(source, f"{what}, and cluster.method=field clusters by cluster.field={field}; give every "
                                "record a value, or choose another cluster.field or cluster.method", number)
    return str(value)


def _field_keys(records: list[dict], field: str, source: str, index: list[int] | None) -> list[str]:
    numbers = range(1, len(records) + 1) if index is None else [int(i) + 1 for i in index]
    return [_field_value(r, field, source, n) for r, n in zip(records, numbers, strict=True)]


def field_values(records: list[dict], field: str, source: str = "records",
                 index: list[int] | None = None) -> list[str]:
    """The distinct values of ``field`` as strings, sorted: the name of each
    cluster id of ``field_clusters``, in id order."""
    return sorted(set(_field_keys(records, field, source, index)))


def field_clusters(records: list[dict], field: str, source: str = "records",
                   index: list[int] | None = None) -> np.ndarray:
    """One cluster id per record (int64): the rank of ``str(record[field])``
    among the field's distinct values, sorted (so the same values give the
    same ids whatever the record order; values with the same string are one
    cluster). A record without the field, or with a null, raises DataError
    naming ``source``, the field and the 1-based record: its position in
    ``records``, or in the source file when ``index`` gives each record's
    0-based position there (the data split's source index)."""
    keys = _field_keys(records, field, source, index)
    ids = {v: i for i, v in enumerate(sorted(set(keys)))}
    return np.asarray([ids[k] for k in keys], np.int64)


def assign(records: list[dict], c: ClusterConfig, seed: int, source: str = "records",
           index: list[int] | None = None) -> np.ndarray:
    """One cluster id per record, by ``c.method`` (minilm, file or field;
    ``source`` and ``index`` name a record in a field's DataError, as in
    ``field_clusters``)."""
    if c.method == "file":
        return read_cluster_file(c.file, len(records))
    if c.method == "field":
        return field_clusters(records, c.field, source, index)
    if c.method != "minilm":
        raise ValueError(f"cluster.method={c.method!r} assigns no clusters here (none: no cluster stage; "
                         "auto: resolved by validate.finalize)")
    from lpjax.selection import embed, kmeans

    vectors = embed.embed_records(records, model_dir=c.embed_model or None)
    assignments, _ = kmeans.kmeans(vectors, min(c.num_clusters, len(records)), seed)
    return np.asarray(assignments, np.int64)
