"""Score every sample of a dataset with a model: per-sample (loss sum,
response token count), batched as planned by lpjax/data/batching.py and run
as one jitted step per batch shape on the mesh. lpjax/scoring/store.py keeps
the results on disk."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from lpjax import sharding
from lpjax.aot import AotFunction
from lpjax.data.batching import (DEFAULT_MAX_LEN, RESP_FRACTIONS, ROW_KEYS, PlannedBatch, Prefixes, collate_plan,
                                 length_buckets, plan_fixed, plan_token_budget, shared_prefixes)
from lpjax.loss import example_loss, prefix_kv


def make_score_fn(graphdef: nnx.GraphDef, mesh: Mesh | None = None) -> "ScoreFn":
    """The jitted scoring step, called as fn(params, host_batch, global rows)
    -> per-example (loss sum, count). With a mesh the batch rows are split
    over (data, fsdp), the prefix table is replicated, and the params stay
    wherever the sharding rules placed them."""
    return ScoreFn(graphdef, mesh)


class ScoreFn:
    """One jit per set of batch keys (plain, +resp_pos, +prefixes), each with
    explicit in/out shardings on a mesh; jit itself caches per shape."""

    def __init__(self, graphdef: nnx.GraphDef, mesh: Mesh | None):
        self.mesh = mesh
        self._graphdef = graphdef
        self._jitted: dict[tuple[str, ...], Callable] = {}
        out = None if mesh is None else sharding.replicated(mesh)
        self._kv = jax.jit(lambda p, t: prefix_kv(nnx.merge(graphdef, p), t), out_shardings=out)

    def _fn(self, keys: tuple[str, ...]) -> Callable:
        if keys not in self._jitted:
            graphdef = self._graphdef

            def score_batch(params, batch):
                return example_loss(nnx.merge(graphdef, params), batch)

            if self.mesh is None:
                jitted = jax.jit(score_batch)
            else:
                batch_sh = sharding.batch_shardings(self.mesh, keys, ROW_KEYS)
                jitted = jax.jit(score_batch, in_shardings=(None, batch_sh), out_shardings=sharding.replicated(self.mesh))
            self._jitted[keys] = AotFunction(jitted, "score step")
        return self._jitted[keys]

    def __call__(self, params: Any, batch: dict, batch_size: int):
        fn = self._fn(tuple(sorted(batch)))
        if self.mesh is not None:
            batch = sharding.put_batch(batch, self.mesh, batch_size, ROW_KEYS)
        return fn(params, batch)

    def prefix_kv(self, params: Any, prefix_tokens: np.ndarray) -> list:
        """The prefixes' keys/values, once per pass (params are fixed in one)."""
        return self._kv(params, prefix_tokens)

    def rows(self, batch_size: int) -> slice | None:
        return None if self.mesh is None else sharding.local_rows(self.mesh, batch_size)

    @property
    def row_multiple(self) -> int:
        """Global batch rows must split evenly over the data axes."""
        return 1 if self.mesh is None else sharding.data_parallel_size(self.mesh)


def plan_scoring(examples: Sequence, batch_size: int = 64, multiple: int = 16, *, token_budget: int = 0,
                 response_head: bool = False, shared_prefix: bool = False, max_len: int | None = None,
                 row_multiple: int = 1) -> tuple[list[PlannedBatch], Prefixes | None]:
    """How a scoring pass cuts the examples into batches (none of the options
    changes a score beyond float rounding; lpjax/data/batching.py):

    - token_budget 0: `batch_size` examples per batch, sorted by length,
      lengths rounded up to `multiple`; > 0: rows x bucket length <= budget,
      buckets from `length_buckets(max_len)`.
    - response_head: the LM head only at response positions (resp_pos).
    - shared_prefix: the template's shared preambles run once per pass.
    """
    prefixes = shared_prefixes(examples) if shared_prefix else None
    if token_budget:
        longest = max((len(ex.ids) for ex in examples), default=1)
        buckets = length_buckets(max(max_len or DEFAULT_MAX_LEN, longest))
        plan = plan_token_budget(examples, token_budget, buckets, prefixes=prefixes, row_multiple=row_multiple,
                                 resp_fractions=RESP_FRACTIONS if response_head else None)
    else:
        plan = plan_fixed(examples, batch_size, multiple, prefixes=prefixes,
                          resp_multiple=multiple if response_head else None)
    return plan, prefixes


def score_examples(score_fn: ScoreFn, params: Any, examples: Sequence, batch_size: int = 64, multiple: int = 16,
                   **options) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample (loss sum, response token count) over all examples, in
    order. options: those of ``plan_scoring`` (defaults: the plain path)."""
    plan, prefixes = plan_scoring(examples, batch_size, multiple, row_multiple=score_fn.row_multiple, **options)
    loss_sum = np.zeros(len(examples), np.float64)
    count = np.zeros(len(examples), np.float64)
    kv = None if prefixes is None else score_fn.prefix_kv(params, prefixes.tokens)
    pending = []
    for planned in plan:
        batch = collate_plan(examples, planned, prefixes, score_fn.rows(planned.rows))
        index = batch.pop("index")
        if kv is not None:
            batch["prefix_kv"] = kv
        # Dispatch is async: the next batch is collated while this one runs.
        pending.append((index, score_fn(params, batch, planned.rows)))
        if len(pending) > 2:
            _collect(pending.pop(0), loss_sum, count)
    for item in pending:
        _collect(item, loss_sum, count)
    return loss_sum, count


def _collect(item, loss_sum: np.ndarray, count: np.ndarray) -> None:
    index, (s, c) = item
    keep = index >= 0
    loss_sum[index[keep]] = np.asarray(s)[keep]
    count[index[keep]] = np.asarray(c)[keep]
