"""Fixed-shape batches from tokenized examples.

Two ways to cut a dataset into batches:

- **Fixed sample count** (``plan_by_length``, ``plan_fixed``,
  ``training_batches``): every batch is [batch_size, L] with L the longest
  example rounded up to a multiple of ``multiple`` (or to a bucket length).
  Training uses this (a step is a fixed number of samples, as in the paper),
  and so do generation and sentence embedding, on their own lengths.
- **Token budget** (``plan_token_budget`` + ``collate_plan``): for scoring, where only throughput matters.
  Each batch is [rows, L] with L from a small fixed set of bucket lengths and
  rows = budget // L, so a batch of short examples holds more of them and the
  matmuls stay the same size; padding stays a few per cent (``plan_stats``).

Rows are right-padded (causal attention makes that safe) and padding rows
carry index -1 and an all-zero loss mask.

Optional keys that make the loss cheaper (lpjax/loss.py reads them when
present; a batch without them gives the same result):

- ``resp_pos`` [B, R]: the positions whose loss_mask is 1, in order, then
  the last position (whose mask is always 0) as filler. The LM head, a fifth
  of a small model's FLOPs, then runs on R positions instead of L.
- A shared prefix (``find_prefixes``): every Alpaca prompt starts with one of
  two fixed preambles (a quarter of a short sample's tokens). Such a row
  holds only the tokens after its prefix; ``prefix_id`` [B] says which
  prefix, and the prefix table ``prefix_tokens`` [K, P] / ``prefix_len`` [K]
  (row 0 is the empty prefix) rides along in every batch. The loss computes
  the prefixes' keys and values once per batch and the rows attend to them.
  The table keys are not per-row: with a mesh they must be replicated, not
  split over the batch axis (``ROW_KEYS`` lists the per-row keys).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np

# Keys whose leading axis is the batch row (shard these over the data axes);
# every other key of a batch (the prefix table) is the same for every row.
ROW_KEYS = ("tokens", "targets", "loss_mask", "index", "resp_pos", "prefix_id")


# resp_pos lengths, as fractions of the batch length (rounded up).
RESP_FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


# ----------------------------------------------------------------------------
# Shared prefixes


@dataclasses.dataclass(frozen=True, eq=False)
class Prefixes:
    """Token prefixes shared by many examples, and which example has which.

    ``tokens`` [K, P] int32 (right-padded with 0), ``lengths`` [K]; row 0 is
    the empty prefix (length 0). ``assignment`` [N]: the prefix row of each
    example (0 = none)."""

    tokens: np.ndarray
    lengths: np.ndarray
    assignment: np.ndarray

    @property
    def num(self) -> int:
        """Number of real (non-empty) prefixes."""
        return len(self.lengths) - 1

    def length_of(self, i: int) -> int:
        return int(self.lengths[self.assignment[i]])


def _shareable(ex) -> np.ndarray:
    # Positions up to prompt_len - 2: the first loss position is
    # prompt_len - 1, whose hidden state the row itself must compute.
    return np.asarray(ex.ids[: max(ex.prompt_len - 1, 0)])


def _largest_rectangle(heights: np.ndarray) -> tuple[int, int, int]:
    """max over runs [a, b] of (b - a + 1) * min(heights[a..b]): (area, a, b)."""
    best = (0, 0, -1)
    stack: list[int] = []  # indices of increasing heights
    n = len(heights)
    for i in range(n + 1):
        h = int(heights[i]) if i < n else -1
        while stack and int(heights[stack[-1]]) >= h:
            j = stack.pop()
            left = stack[-1] + 1 if stack else 0
            area = int(heights[j]) * (i - left)
            if area > best[0]:
                best = (area, left, i - 1)
        if i < n:
            stack.append(i)
    return best


def find_prefixes(examples: Sequence, max_prefixes: int = 4, min_len: int = 8, min_count: int = 8,
                  max_len: int = 128) -> Prefixes:
    """Find up to ``max_prefixes`` token prefixes shared by many examples
    (the template's fixed preamble, a chat system prompt) and assign each
    example the one it starts with.

    Greedy: sort the prompts lexicographically; adjacent prompts' common
    prefix lengths form a histogram whose largest rectangle is the prefix
    that saves the most tokens ((count - 1) x length). Take it, set its
    examples aside, repeat. A prefix must be at least ``min_len`` tokens,
    shared by ``min_count`` examples, and end before the example's first
    loss position; it is capped at ``max_len`` tokens."""
    n = len(examples)
    assignment = np.zeros(n, np.int32)
    regions = [_shareable(ex)[:max_len] for ex in examples]
    lens = np.array([len(r) for r in regions], np.int64)
    width = int(lens.max()) if n else 0
    found: list[np.ndarray] = []
    if width >= min_len and n >= max(min_count, 2):
        table = np.full((n, width), -1, np.int64)
        for i, r in enumerate(regions):
            table[i, : len(r)] = r
        remaining = np.flatnonzero(lens >= min_len)
        while len(found) < max_prefixes and len(remaining) >= max(min_count, 2):
            sub = table[remaining]
            order = remaining[np.lexsort(sub.T[::-1])]
            a, b = table[order[:-1]], table[order[1:]]
            differ = a != b
            lcp = np.where(differ.any(1), differ.argmax(1), width)
            lcp = np.minimum(lcp, np.minimum(lens[order[:-1]], lens[order[1:]]))
            heights = np.where(lcp >= min_len, lcp, 0)
            _, lo, hi = _largest_rectangle(heights)
            if hi < lo:
                break
            members = order[lo : hi + 2]
            plen = int(heights[lo : hi + 1].min())
            if len(members) < min_count or plen < min_len:
                break
            found.append(table[members[0], :plen].astype(np.int32))
            assignment[members] = len(found)
            remaining = np.setdiff1d(remaining, members)
    width = max([1] + [len(p) for p in found])
    tokens = np.zeros((len(found) + 1, width), np.int32)
    for k, p in enumerate(found, start=1):
        tokens[k, : len(p)] = p
    lengths = np.array([0] + [len(p) for p in found], np.int32)
    return Prefixes(tokens, lengths, assignment)


def shared_prefixes(examples: Sequence) -> Prefixes | None:
    """``find_prefixes`` with defaults, or None when the examples share none
    (batches then carry no prefix table at all)."""
    prefixes = find_prefixes(examples)
    return prefixes if prefixes.num else None


# ----------------------------------------------------------------------------
# Collation


def collate(examples: Sequence, indices: Sequence[int], batch_size: int, length: int, pad_id: int = 0,
            resp_len: int | None = None, prefixes: Prefixes | None = None) -> dict[str, np.ndarray]:
    """Batch the examples at `indices` (-1 = a padding row) into arrays of
    shape [batch_size, length].

    targets[t] is the token position t predicts (ids[t + 1]); loss_mask[t] is 1
    where that token is a response token (index >= prompt_len).

    resp_len: also return ``resp_pos`` [batch_size, resp_len] (see the
    module docstring). prefixes: rows hold the tokens after their example's
    prefix (``length`` counts only those), plus ``prefix_id`` and the table.
    """
    tokens = np.full((batch_size, length), pad_id, np.int32)
    targets = np.zeros((batch_size, length), np.int32)
    mask = np.zeros((batch_size, length), np.float32)
    index = np.full((batch_size,), -1, np.int32)
    prefix_id = np.zeros((batch_size,), np.int32)
    for row, i in enumerate(indices):
        if i < 0:
            continue
        ex = examples[i]
        skip = 0
        if prefixes is not None:
            prefix_id[row] = prefixes.assignment[i]
            skip = int(prefixes.lengths[prefix_id[row]])
        ids = np.asarray(ex.ids)[skip:]
        n = len(ids)
        if n > length:
            raise ValueError(f"example {i} has {n} tokens, more than the batch length {length}")
        tokens[row, :n] = ids
        targets[row, : n - 1] = ids[1:]
        # The first response token is predicted from the position before it;
        # a sequence's position 0 predicts nothing.
        mask[row, max(ex.prompt_len - skip, 1) - 1 : n - 1] = 1.0
        index[row] = i
    batch = {"tokens": tokens, "targets": targets, "loss_mask": mask, "index": index}
    if resp_len is not None:
        # Filler: the last position, whose mask is always 0 (it predicts
        # nothing: a real token there is the row's last).
        resp_pos = np.full((batch_size, resp_len), length - 1, np.int32)
        for row in range(batch_size):
            pos = np.flatnonzero(mask[row])
            if len(pos) > resp_len:
                raise ValueError(f"row {row} has {len(pos)} response positions, more than resp_len {resp_len}")
            resp_pos[row, : len(pos)] = pos
        batch["resp_pos"] = resp_pos
    if prefixes is not None:
        batch["prefix_id"] = prefix_id
        batch["prefix_tokens"] = prefixes.tokens
        batch["prefix_len"] = prefixes.lengths
    return batch


@dataclasses.dataclass(frozen=True)
class PlannedBatch:
    """One planned batch: the example indices of its rows
    (-1 = a padding row), its row length and its resp_pos length (None: no
    resp_pos)."""

    indices: np.ndarray
    length: int
    resp_len: int | None

    @property
    def rows(self) -> int:
        return len(self.indices)


def fixed_batch(examples: Sequence, chunk: Sequence[int], batch_size: int, multiple: int,
                resp_multiple: int | None = None, prefixes: Prefixes | None = None) -> PlannedBatch:
    """The batch of ``batch_size`` rows holding ``chunk`` (then padding
    rows), its length the longest row rounded up to ``multiple``."""
    indices = np.full(batch_size, -1, np.int64)
    indices[: len(chunk)] = chunk
    skip = (lambda i: 0) if prefixes is None else prefixes.length_of
    length = round_up(max(len(examples[i].ids) - skip(i) for i in chunk), multiple)
    resp_len = None
    if resp_multiple:
        # A few fractions of the length, not every multiple: each new
        # resp_pos length is one more compile of the step.
        longest = max(response_positions(examples[i], skip(i)) for i in chunk)
        resp_len = resp_bucket(longest, length, RESP_FRACTIONS, resp_multiple)
    return PlannedBatch(indices, length, resp_len)


def response_positions(ex, skip: int = 0) -> int:
    """How many positions of an example predict a response token (its
    loss_mask sum; ``skip``: a prefix of that many tokens is left out)."""
    return max(len(ex.ids) - max(ex.prompt_len, skip + 1, 1), 0)


def batch_length(longest: int, multiple: int = 1, buckets: Sequence[int] | None = None) -> int:
    """A batch's row length: its longest row rounded up to ``multiple``, or
    the smallest of ``buckets`` that holds it (the largest if none does)."""
    if buckets:
        return next((b for b in sorted(buckets) if b >= longest), max(buckets))
    return round_up(max(longest, 1), multiple)


def plan_by_length(lengths: Sequence[int], batch_size: int, multiple: int = 1, buckets: Sequence[int] | None = None,
                   last_row_multiple: int | None = None) -> list[PlannedBatch]:
    """Every item once, sorted by length (stable), in batches of
    ``batch_size`` rows whose length is ``batch_length`` of their longest:
    the planner behind scoring, generation and embedding batches. Padding
    stays small, and jit sees a few shapes only. ``last_row_multiple``: the
    last, partial batch has only as many rows as it needs, rounded up to
    this (one extra shape instead of a batch of mostly padding rows)."""
    lengths = np.asarray(lengths, np.int64)
    order = np.argsort(lengths, kind="stable")
    plan = []
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        rows = batch_size
        if last_row_multiple and len(chunk) < batch_size:
            rows = min(batch_size, round_up(len(chunk), last_row_multiple))
        indices = np.full(rows, -1, np.int64)
        indices[: len(chunk)] = chunk
        plan.append(PlannedBatch(indices, batch_length(int(lengths[chunk].max()), multiple, buckets), None))
    return plan


def plan_fixed(examples: Sequence, batch_size: int, multiple: int, prefixes: Prefixes | None = None,
               resp_multiple: int | None = None) -> list[PlannedBatch]:
    """All examples once in batches of ``batch_size``, sorted by length so
    padding stays small. resp_multiple, prefixes: as in ``training_batches``."""
    skip = (lambda i: 0) if prefixes is None else prefixes.length_of
    plan = plan_by_length([len(ex.ids) - skip(i) for i, ex in enumerate(examples)], batch_size, multiple)
    return [fixed_batch(examples, b.indices[b.indices >= 0], batch_size, multiple, resp_multiple, prefixes)
            for b in plan]


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled sample order of one training epoch, a pure function of
    (seed, epoch) so a resumed run sees the same order."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def epoch_plan(examples: Sequence, batch_size: int, multiple: int, seed: int, epoch: int,
               resp_multiple: int | None = None, prefixes: Prefixes | None = None) -> list[PlannedBatch]:
    """The planned batches of one training epoch, in order: the shuffled
    order cut into ``batch_size`` chunks (``fixed_batch`` each)."""
    order = epoch_order(len(examples), seed, epoch)
    return [fixed_batch(examples, order[start : start + batch_size], batch_size, multiple, resp_multiple, prefixes)
            for start in range(0, len(order), batch_size)]


def training_batches(
    examples: Sequence, batch_size: int, multiple: int, seed: int, epoch: int, start_batch: int = 0,
    rows: slice | None = None, resp_multiple: int | None = None, prefixes: Prefixes | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """One epoch of shuffled batches, from batch `start_batch` on (for resume).
    resp_multiple: add ``resp_pos`` with its length rounded up to this;
    prefixes: rows hold the tokens after their shared prefix (module
    docstring). Either changes the batch shapes, never the loss."""
    for planned in epoch_plan(examples, batch_size, multiple, seed, epoch, resp_multiple, prefixes)[start_batch:]:
        yield collate_plan(examples, planned, prefixes, rows)


def batches_per_epoch(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


# ----------------------------------------------------------------------------
# Token-budget batching (scoring)


def length_buckets(max_len: int, smallest: int = 16, multiple: int = 8, growth: float = 0.125) -> tuple[int, ...]:
    """Bucket lengths from ``smallest`` to ``max_len`` (always included),
    each about ``growth`` longer than the one before (rounded to a multiple
    of ``multiple``, at least one multiple more): padding a row to its
    bucket costs at most ~1/7 of it, ~6 % on average. For max_len 512: 25
    buckets 16, 24, ..., 80, 88, 96, 112, ..., 456, 512."""
    out = [round_up(max(smallest, 1), multiple)]
    while out[-1] < max_len:
        out.append(max(int(round(out[-1] * (1 + growth) / multiple)) * multiple, out[-1] + multiple))
    out[-1] = min(out[-1], max_len)
    return tuple(out)


DEFAULT_MAX_LEN = 512


def resp_bucket(longest: int, length: int, fractions: Sequence[float], multiple: int) -> int:
    for f in sorted(fractions):
        r = min(round_up(max(int(np.ceil(f * length)), 1), multiple), length)
        if r >= longest:
            return r
    return length


def plan_token_budget(
    examples: Sequence, token_budget: int, buckets: Sequence[int] | None = None, prefixes: Prefixes | None = None,
    row_multiple: int = 1, resp_fractions: Sequence[float] | None = RESP_FRACTIONS,
    resp_multiple: int = 8,
) -> list[PlannedBatch]:
    """Cut all examples into batches of at most ``token_budget`` tokens
    (rows x length, padding included).

    Each example goes to the smallest bucket length that holds its row (the
    tokens after its prefix, with ``prefixes``). A bucket of length L makes
    batches of budget // L rows (rounded down to ``row_multiple``, the number
    of data-parallel devices), its examples sorted by response length so a
    batch's ``resp_pos`` is short where its responses are. A bucket's
    leftover examples, too few for a full batch, move up to the next bucket
    when padding them to its length wastes fewer tokens than padding rows
    would; otherwise they make a batch of fewer rows (halving the row count
    while it still holds them: at most one extra shape per bucket).

    Shapes come from a fixed set (bucket x row count x resp_fractions), so jit
    compiles a bounded number of times. Deterministic. ``buckets`` default:
    ``length_buckets(512)`` (or up to the longest row, if longer); pass
    ``length_buckets(max_len)`` of the data config to keep shapes fixed.
    ``resp_fractions`` None: no ``resp_pos``.
    """
    n = len(examples)
    if n == 0:
        return []
    skips = np.zeros(n, np.int64) if prefixes is None else prefixes.lengths[prefixes.assignment].astype(np.int64)
    row_len = np.array([len(ex.ids) for ex in examples], np.int64) - skips
    longest = int(row_len.max())
    if buckets is None:
        buckets = length_buckets(max(DEFAULT_MAX_LEN, round_up(longest, 8)))
    buckets = sorted(buckets)
    if longest > buckets[-1]:
        raise ValueError(f"an example has {longest} tokens, more than the largest bucket {buckets[-1]}")
    if token_budget < buckets[-1] * row_multiple:
        raise ValueError(f"token_budget {token_budget} holds no batch of {row_multiple} rows of the largest "
                         f"bucket {buckets[-1]}")
    resp = np.array([response_positions(ex, int(s)) for ex, s in zip(examples, skips)], np.int64)
    bucket_of = np.searchsorted(np.asarray(buckets), row_len)  # smallest bucket >= row length

    def rows_for(length: int) -> int:
        return max(row_multiple, (token_budget // length) // row_multiple * row_multiple)

    def make(members: list[int], length: int, rows: int) -> PlannedBatch:
        indices = np.full(rows, -1, np.int64)
        indices[: len(members)] = members
        resp_len = None
        if resp_fractions is not None:
            resp_len = resp_bucket(int(resp[members].max()), length, resp_fractions, resp_multiple)
        return PlannedBatch(indices, length, resp_len)

    plan: list[PlannedBatch] = []
    carry: list[int] = []
    for b, length in enumerate(buckets):
        members = carry + [int(i) for i in np.flatnonzero(bucket_of == b)]
        if not members:
            continue
        members.sort(key=lambda i: (resp[i], row_len[i], i))
        rows = rows_for(length)
        full = len(members) // rows * rows
        for start in range(0, full, rows):
            plan.append(make(members[start : start + rows], length, rows))
        left = members[full:]
        carry = []
        if not left:
            continue
        is_last = b == len(buckets) - 1 or not np.any(bucket_of > b)
        small = rows
        while small // 2 >= len(left) and (small // 2) % row_multiple == 0 and small // 2 >= row_multiple:
            small //= 2
        pad_rows_waste = (small - len(left)) * length
        move_up_waste = sum(buckets[b + 1] - length for _ in left) if not is_last else None
        if is_last or pad_rows_waste <= move_up_waste:
            plan.append(make(left, length, small))
        else:
            carry = left
    return plan


def plan_stats(examples: Sequence, plan: Sequence[PlannedBatch], prefixes: Prefixes | None = None) -> dict:
    """Padding and shapes of a plan: tokens (the examples' own, prefix
    included), row tokens (what the rows hold), padded (rows x length summed),
    padding_fraction = 1 - row tokens / padded, the distinct shapes."""
    tokens = sum(len(ex.ids) for ex in examples)
    skip = 0 if prefixes is None else int(sum(prefixes.length_of(i) for i in range(len(examples))))
    padded = sum(b.rows * b.length for b in plan)
    head = sum(b.rows * (b.resp_len if b.resp_len is not None else b.length) for b in plan)
    resp = sum(response_positions(ex) for ex in examples)
    shapes = sorted({(b.rows, b.length, b.resp_len) for b in plan}, key=lambda s: (s[1], s[0], s[2] or 0))
    return {
        "examples": len(examples), "batches": len(plan), "tokens": tokens, "prefix_tokens_skipped": skip,
        "row_tokens": tokens - skip, "padded_tokens": padded,
        "padding_fraction": 1.0 - (tokens - skip) / max(padded, 1),
        "response_positions": resp, "head_positions": head,
        "head_padding_fraction": 1.0 - resp / max(head, 1), "shapes": shapes,
    }


def collate_plan(examples: Sequence, batch: PlannedBatch, prefixes: Prefixes | None = None,
                 rows: slice | None = None) -> dict[str, np.ndarray]:
    """The arrays of one planned batch; rows: this process's share (None =
    all). "index" is the global batch's sample indices."""
    local = batch.indices if rows is None else batch.indices[rows]
    out = collate(examples, local, len(local), batch.length, resp_len=batch.resp_len, prefixes=prefixes)
    out["index"] = batch.indices.astype(np.int32)
    return out
