"""Cluster assignments of the training records, for per-cluster selection:
MiniLM embeddings + k-means (docs/method.md, Clusters), or a user's file."""
from __future__ import annotations

import json

import numpy as np

from lpjax.config import ClusterConfig
from lpjax.data.formats import DataError


def read_cluster_file(path: str, n: int) -> np.ndarray:
    """A JSON list of ints, or a text file with one int per line; n of them."""
    with open(path) as f:
        text = f.read()
    try:
        values = json.loads(text) if text.lstrip().startswith("[") else [int(v) for v in text.split()]
    except ValueError as e:
        raise DataError(path, f"not a list of cluster ids ({e})") from None
    if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise DataError(path, "cluster ids must be integers")
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
