"""Fixed-shape batches from tokenized examples.

Every batch is [batch_size, L] with L a multiple of `multiple`, so jit sees a
few shapes, not one per batch. Rows are right-padded (causal attention makes
that safe) and padding rows carry index -1 and an all-zero loss mask.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def collate(examples: Sequence, indices: Sequence[int], batch_size: int, length: int, pad_id: int = 0) -> dict[str, np.ndarray]:
    """Batch the examples at `indices` (-1 = a padding row) into arrays of
    shape [batch_size, length].

    targets[t] is the token position t predicts (ids[t + 1]); loss_mask[t] is 1
    where that token is a response token (index >= prompt_len).
    """
    tokens = np.full((batch_size, length), pad_id, np.int32)
    targets = np.zeros((batch_size, length), np.int32)
    mask = np.zeros((batch_size, length), np.float32)
    index = np.full((batch_size,), -1, np.int32)
    for row, i in enumerate(indices):
        if i < 0:
            continue
        ids = np.asarray(examples[i].ids)
        n = len(ids)
        if n > length:
            raise ValueError(f"example {i} has {n} tokens, more than the batch length {length}")
        tokens[row, :n] = ids
        targets[row, : n - 1] = ids[1:]
        # The first response token is predicted from the position before it;
        # a sequence's position 0 predicts nothing.
        mask[row, max(examples[i].prompt_len, 1) - 1 : n - 1] = 1.0
        index[row] = i
    return {"tokens": tokens, "targets": targets, "loss_mask": mask, "index": index}


def _batch(examples: Sequence, chunk: Sequence[int], batch_size: int, multiple: int, rows: slice | None):
    """The rows `rows` (this process's share; None = all) of the global batch
    holding `chunk`. The length is the global batch's, so every process
    builds the same shape; "index" is the global batch's sample indices."""
    padded = np.full(batch_size, -1, np.int64)
    padded[: len(chunk)] = chunk
    length = round_up(max(len(examples[i].ids) for i in chunk), multiple)
    local = padded if rows is None else padded[rows]
    batch = collate(examples, local, len(local), length)
    batch["index"] = padded
    return batch


def scoring_batches(examples: Sequence, batch_size: int, multiple: int, rows: slice | None = None) -> Iterator[dict[str, np.ndarray]]:
    """All examples once, sorted by length so padding stays small."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].ids))
    for start in range(0, len(order), batch_size):
        yield _batch(examples, order[start : start + batch_size], batch_size, multiple, rows)


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled sample order of one training epoch, a pure function of
    (seed, epoch) so a resumed run sees the same order."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def training_batches(
    examples: Sequence, batch_size: int, multiple: int, seed: int, epoch: int, start_batch: int = 0,
    rows: slice | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """One epoch of shuffled batches, from batch `start_batch` on (for resume)."""
    order = epoch_order(len(examples), seed, epoch)
    for start in range(start_batch * batch_size, len(order), batch_size):
        yield _batch(examples, order[start : start + batch_size], batch_size, multiple, rows)


def batches_per_epoch(n: int, batch_size: int) -> int:
    return -(-n // batch_size)
