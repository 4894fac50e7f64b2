"""Score every sample of a dataset with a model: per-sample (loss sum,
response token count), batched as planned by lpjax/data/batching.py and run
as one jitted step per batch shape on the mesh. lpjax/scoring/store.py keeps
the results on disk."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import Mesh

from lpjax import sharding, tuning
from lpjax.aot import AotFunction
from lpjax.data.batching import (DEFAULT_MAX_LEN, RESP_FRACTIONS, ROW_KEYS, PlannedBatch, Prefixes, collate_plan,
                                 length_buckets, plan_fixed, plan_token_budget, resp_bucket, response_positions,
                                 shared_prefixes)
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

    def _placed(self, batch: dict, batch_size: int) -> dict:
        return batch if self.mesh is None else sharding.put_batch(batch, self.mesh, batch_size, ROW_KEYS)

    def __call__(self, params: Any, batch: dict, batch_size: int):
        return self._fn(tuple(sorted(batch)))(params, self._placed(batch, batch_size))

    def precompile(self, params: Any, batches: Sequence[tuple[dict, int]]) -> None:
        """Compile the steps of these (batch, global rows) shapes at once
        (AotFunction.precompile: in parallel threads)."""
        if batches:
            fn = self._fn(tuple(sorted(batches[0][0])))
            fn.precompile([(params, self._placed(b, rows)) for b, rows in batches])

    def prefix_kv(self, params: Any, prefix_tokens: np.ndarray) -> tuple[jax.Array, jax.Array]:
        """The prefixes' keys/values, once per pass (params are fixed in one)."""
        return self._kv(params, prefix_tokens)

    def rows(self, batch_size: int) -> slice | None:
        return None if self.mesh is None else sharding.local_rows(self.mesh, batch_size)

    @property
    def row_multiple(self) -> int:
        """Global batch rows must split evenly over the data axes."""
        return 1 if self.mesh is None else sharding.data_parallel_size(self.mesh)


def scoring_buckets(examples: Sequence, max_len: int | None) -> tuple[int, ...]:
    """The length buckets of a token-budget pass (up to max_len, or the longest row)."""
    longest = max((len(ex.ids) for ex in examples), default=1)
    return length_buckets(max(max_len or DEFAULT_MAX_LEN, longest))


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
        plan = plan_token_budget(examples, token_budget, scoring_buckets(examples, max_len), prefixes=prefixes, row_multiple=row_multiple,
                                 resp_fractions=RESP_FRACTIONS if response_head else None)
    else:
        plan = plan_fixed(examples, batch_size, multiple, prefixes=prefixes,
                          resp_multiple=multiple if response_head else None)
    return plan, prefixes


def auto_token_budget(score_fn: "ScoreFn", params: Any, model_cfg: Any, examples: Sequence, *,
                      response_head: bool = True, shared_prefix: bool = True, max_len: int | None = None,
                      use_cache: bool = True) -> dict:
    """The scoring token budget that runs fastest on this machine for this
    model: the real scoring step timed on batches of the data's typical
    bucket length (``tuning.typical_length``) at increasing budgets
    (``tuning.budget_candidates``, ``tuning.tune_budget``), cached per
    (machine, model shape, length, options) in the user cache.

    Returns {"token_budget", "rates" (tokens/s per budget tried), "length",
    "source": "measured" | "cached"}. With several processes every process
    measures and takes process 0's rates, so all make the same choice (and
    run the same steps); nothing is cached then."""
    if not examples:
        return {"token_budget": DEFAULT_MAX_LEN, "rates": {}, "length": 0, "source": "empty"}
    prefixes = shared_prefixes(examples) if shared_prefix else None
    skip = (lambda i: 0) if prefixes is None else prefixes.length_of
    row_len = np.array([len(ex.ids) - skip(i) for i, ex in enumerate(examples)])
    buckets = scoring_buckets(examples, max_len)
    length = tuning.typical_length(row_len, buckets)
    smaller = max([b for b in buckets if b < length], default=0)
    members = np.flatnonzero((row_len <= length) & (row_len > smaller))
    multiple = score_fn.row_multiple
    many = jax.process_count() > 1
    candidates = tuning.budget_candidates(jax.default_backend(), buckets[-1] * multiple, int(row_len.sum()))
    tuned = tuning.Tuned("score_token_budget", model_cfg, {
        "length": length, "longest_bucket": buckets[-1], "row_multiple": multiple, "response_head": response_head,
        "shared_prefix": prefixes is not None, "largest_candidate": candidates[-1]})
    if use_cache and not many and (record := tuned.get()) is not None:
        return {**record, "source": "cached"}
    kv = None if prefixes is None else score_fn.prefix_kv(params, prefixes.tokens)
    resp_len = None
    if response_head:
        resp_len = resp_bucket(max(response_positions(examples[i], skip(i)) for i in members), length, RESP_FRACTIONS,
                               8)
    by_rows: dict[int, float] = {}

    def measure(budget: int) -> float:
        rows = max(multiple, budget // length // multiple * multiple)
        if rows not in by_rows:
            planned = PlannedBatch(np.resize(members, rows), length, resp_len)
            batch = collate_plan(examples, planned, prefixes, score_fn.rows(rows))
            batch.pop("index")
            if kv is not None:
                batch["prefix_kv"] = kv
            seconds = tuning.time_call(lambda: jax.block_until_ready(score_fn(params, batch, rows)))
            rate = rows * length / seconds
            if many:
                from jax.experimental import multihost_utils

                rate = float(multihost_utils.broadcast_one_to_all(np.float64(rate)))
            by_rows[rows] = rate
            logging.info("scoring autotune: %d rows x %d tokens: %.0f tokens/s", rows, length, rate)
        return by_rows[rows]

    record = {**tuning.tune_budget(measure, candidates), "length": length}
    if use_cache and not many:
        tuned.put(record)
    return {**record, "source": "measured"}


# What held-out scoring of a tuned model runs with: the LM head only at
# response positions and the template's preambles once per pass, the
# probe's own defaults (the same losses to fp32 rounding, fewer FLOPs; a
# long-context reference set spends most of its tokens in the prompt).
EVAL_OPTIONS = {"response_head": True, "shared_prefix": True}


def score_examples(score_fn: ScoreFn, params: Any, examples: Sequence, batch_size: int = 64, multiple: int = 16,
                   **options) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample (loss sum, response token count) over all examples, in
    order. options: those of ``plan_scoring`` (defaults: the plain path)."""
    plan, prefixes = plan_scoring(examples, batch_size, multiple, row_multiple=score_fn.row_multiple, **options)
    loss_sum = np.zeros(len(examples), np.float64)
    count = np.zeros(len(examples), np.float64)
    kv = None if prefixes is None else score_fn.prefix_kv(params, prefixes.tokens)

    def collated(planned: PlannedBatch) -> tuple[dict, np.ndarray]:
        batch = collate_plan(examples, planned, prefixes, score_fn.rows(planned.rows))
        index = batch.pop("index")
        if kv is not None:
            batch["prefix_kv"] = kv
        return batch, index

    # Every shape of the pass compiles up front, in parallel.
    firsts = {(b.rows, b.length, b.resp_len): b for b in reversed(plan)}
    score_fn.precompile(params, [(collated(b)[0], b.rows) for b in firsts.values()])
    pending = []
    for planned in plan:
        batch, index = collated(planned)
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
