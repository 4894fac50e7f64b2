"""Cluster assignments of the training records, for per-cluster selection:
MiniLM embeddings + k-means (docs/method.md, Clusters), or a user's file."""
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


def assign(records: list[dict], c: ClusterConfig, seed: int) -> np.ndarray:
    """One cluster id per record, by ``c.method`` (minilm or file)."""
    if c.method == "file":
        return read_cluster_file(c.file, len(records))
    from lpjax.selection import embed, kmeans

    vectors = embed.embed_records(records, model_dir=c.embed_model or None)
    assignments, _ = kmeans.kmeans(vectors, min(c.num_clusters, len(records)), seed)
    return np.asarray(assignments, np.int64)
