"""Score every sample of a dataset with a model, and keep per-epoch score
arrays on disk.

A score directory holds two zarr arrays written with tensorstore, `ppl` and
`loss`, each [epochs + 1, N] float32 (row 0 = before training, row i = after
epoch i; NaN = not scored yet), and `meta.json` (model, template, max_len,
data fingerprint). Rows are separate chunks, so each epoch's row lands
atomically and an interrupted run knows which rows it still owes.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
import tensorstore as ts
from flax import nnx
from jax.sharding import Mesh

from lpjax import sharding
from lpjax.data.batching import scoring_batches
from lpjax.io_utils import write_json_atomic
from lpjax.loss import example_loss, mean_loss, perplexity

ARRAYS = ("ppl", "loss")


def make_score_fn(graphdef: nnx.GraphDef, mesh: Mesh | None = None) -> Callable:
    """The jitted scoring step, called as fn(params, host_batch) -> per-example
    (loss sum, count). With a mesh the batch is split over (data, fsdp) and
    the params stay wherever the sharding rules placed them."""

    def score_batch(params, batch):
        return example_loss(nnx.merge(graphdef, params), batch)

    if mesh is None:
        jitted = jax.jit(score_batch)
        return ScoreFn(lambda params, batch, batch_size: jitted(params, batch), None)
    batch_sh = {k: sharding.batch_sharding(mesh) for k in ("tokens", "targets", "loss_mask")}
    jitted = jax.jit(score_batch, in_shardings=(None, batch_sh), out_shardings=sharding.replicated(mesh))
    return ScoreFn(lambda params, batch, batch_size: jitted(params, sharding.put_batch(batch, mesh, batch_size)), mesh)


class ScoreFn(NamedTuple):
    """fn(params, this process's rows of a batch, global batch size)."""

    fn: Callable
    mesh: Mesh | None

    def rows(self, batch_size: int) -> slice | None:
        return None if self.mesh is None else sharding.local_rows(self.mesh, batch_size)


def score_examples(score_fn, params: Any, examples: Sequence, batch_size: int, multiple: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample (loss sum, response token count) over all examples, in order."""
    loss_sum = np.zeros(len(examples), np.float64)
    count = np.zeros(len(examples), np.float64)
    for batch in scoring_batches(examples, batch_size, multiple, score_fn.rows(batch_size)):
        index = batch.pop("index")
        s, c = score_fn.fn(params, batch, batch_size)
        keep = index >= 0
        loss_sum[index[keep]] = np.asarray(s)[keep]
        count[index[keep]] = np.asarray(c)[keep]
    return loss_sum, count


def _spec(directory: str, name: str) -> dict:
    return {"driver": "zarr", "kvstore": {"driver": "file", "path": os.path.join(directory, name)}}


class ScoreStore:
    """Per-epoch ppl/loss arrays of one model on one dataset."""

    def __init__(self, directory: str, arrays: dict[str, ts.TensorStore], meta: dict):
        self.directory, self._arrays, self.meta = directory, arrays, meta

    @classmethod
    def create(cls, directory: str, num_rows: int, num_samples: int, meta: dict) -> "ScoreStore":
        os.makedirs(directory, exist_ok=True)
        arrays = {
            name: ts.open(
                _spec(directory, name), create=True, delete_existing=True, dtype=ts.float32,
                shape=[num_rows, num_samples], chunk_layout=ts.ChunkLayout(chunk_shape=[1, num_samples]),
                fill_value=np.nan,
            ).result()
            for name in ARRAYS
        }
        write_json_atomic(os.path.join(directory, "meta.json"), meta)
        return cls(directory, arrays, meta)

    @classmethod
    def open(cls, directory: str) -> "ScoreStore":
        with open(os.path.join(directory, "meta.json")) as f:
            meta = json.load(f)
        return cls(directory, {name: ts.open(_spec(directory, name)).result() for name in ARRAYS}, meta)

    def write_row(self, row: int, loss_sum: np.ndarray, count: np.ndarray) -> None:
        self._arrays["loss"][row].write(mean_loss(loss_sum, count).astype(np.float32)).result()
        self._arrays["ppl"][row].write(perplexity(loss_sum, count).astype(np.float32)).result()

    def read(self, name: str = "ppl") -> np.ndarray:
        return np.asarray(self._arrays[name].read().result())

    def done_rows(self) -> list[int]:
        ppl = self.read("ppl")
        return [i for i in range(ppl.shape[0]) if not np.isnan(ppl[i]).any()]
