"""Batched decoding with a KV cache: greedy or sampled, stopping at EOS.

Prompts sit right-padded in a [B, P] buffer with per-row lengths. One jitted
prefill runs the model over the buffer (causal attention keeps each row's
padding out of its real tokens) and writes every position's keys and values
into a cache of P + max_new_tokens slots. A `lax.while_loop` then decodes one
token per step for all rows at once; each row keeps its own write cursor, so
a row's new token lands at its own position (slot = position) and attends
to the slots at or before it. Rows whose prompt is shorter therefore
overwrite their padding slots before they ever attend to them, and every row
sees exactly what it would see alone, unpadded: this is what makes the
output match transformers' `generate` token for token. The loop ends when
every row has emitted EOS or max_new_tokens steps have run.

Sampling follows transformers' order: temperature, then top-k, then top-p.

On a mesh (as training and scoring run) the parameters stay where the
sharding rules placed them, the prompt rows are split over the batch axes
(data, fsdp), and the generated tokens come back replicated, so every
process reads every row.

``decode`` is the one decode path: held-out exact match, test-set answers
and the lpjax judge all call it (``generate`` is it with a module).
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from lpjax import sharding
from lpjax.data.batching import plan_by_length


def filter_logits(logits: jax.Array, temperature=1.0, top_k=0, top_p=1.0) -> jax.Array:
    """Logits [B, V] divided by temperature, with everything outside the
    top-k and then outside the top-p nucleus set to the dtype's minimum, as
    transformers' Temperature/TopK/TopP warpers do. top_k 0 and top_p 1
    disable a filter. All three may be traced values (one compile serves
    every setting); one sort serves both filters."""
    logits = logits / temperature
    neg = jnp.finfo(logits.dtype).min
    vocab = logits.shape[-1]
    order = jnp.argsort(logits, axis=-1)  # ascending
    ascending = jnp.take_along_axis(logits, order, axis=-1)
    k = jnp.clip(jnp.where(top_k > 0, top_k, vocab), 1, vocab)
    kth = jnp.take(ascending, vocab - k, axis=-1)[..., None]
    ascending = jnp.where(ascending < kth, neg, ascending)
    # Drop the low tail whose total mass is <= 1 - top_p, always keeping the most likely token.
    cum = jnp.cumsum(jax.nn.softmax(ascending, axis=-1), axis=-1)
    drop_sorted = ((cum <= 1.0 - top_p) & (top_p < 1.0)).at[..., -1].set(False)
    drop = jnp.zeros_like(drop_sorted).at[jnp.arange(logits.shape[0])[:, None], order].set(drop_sorted)
    return jnp.where(drop | (logits < kth), neg, logits)


def _eos_ids(eos_id: int | Sequence[int] | None) -> tuple[int, ...]:
    if eos_id is None:
        return ()
    return (int(eos_id),) if np.isscalar(eos_id) else tuple(int(e) for e in eos_id)


@functools.lru_cache(maxsize=32)
def _decoder(graphdef: nnx.GraphDef, max_new_tokens: int, eos: tuple[int, ...], sampled: bool, mesh: Mesh | None):
    """The jitted decoder, one per (model graph, budget, EOS set, greedy or
    sampled, mesh); the sampling settings are arguments, not constants."""
    eos_ids = jnp.asarray(eos or (-1,), jnp.int32)

    def generate(params, prompts, lengths, key, temperature, top_k, top_p):
        model = nnx.merge(graphdef, params)
        model.unstack_layers()  # the decode loop's fastest form (lpjax/models/common.py)
        b, p = prompts.shape
        total = p + max_new_tokens
        if model.max_length() is not None and total > model.max_length():
            raise ValueError(f"prompt buffer {p} + max_new_tokens {max_new_tokens} exceeds the model's "
                             f"{model.max_length()} learned positions")
        rows = jnp.arange(b)
        head = model.head_weight()
        keys, values = model.init_cache(b, total)
        cache = [(keys[i], values[i]) for i in range(keys.shape[0])]
        hidden, cache = model.forward_cached(prompts, jnp.broadcast_to(jnp.arange(p), (b, p)), cache, prefill=True)
        logits = hidden[rows, lengths - 1].astype(jnp.float32) @ head
        tokens = jnp.zeros((b, total), prompts.dtype).at[:, :p].set(prompts)

        def select(logits, key):
            if not sampled:
                return jnp.argmax(logits, axis=-1)
            return jax.random.categorical(key, filter_logits(logits, temperature, top_k, top_p), axis=-1)

        def cond(state):
            step, _, _, done, _, _, _ = state
            return (step < max_new_tokens) & ~jnp.all(done)

        def body(state):
            step, tokens, cur, done, logits, cache, key = state
            key, sub = jax.random.split(key)
            nxt = select(logits, sub).astype(tokens.dtype)
            write = ~done
            # A live row's cursor is always inside the buffer; a finished
            # row's may sit one past it, so clamp where it indexes.
            at = jnp.minimum(cur, total - 1)
            tokens = tokens.at[rows, at].set(jnp.where(write, nxt, tokens[rows, at]))
            done = done | (write & jnp.isin(nxt, eos_ids))
            cur = cur + write.astype(cur.dtype)
            # The new token sits at position `at`; a finished row recomputes
            # a slot past its end, which nothing reads.
            hidden, cache = model.forward_cached(nxt[:, None], at[:, None], cache, prefill=False)
            logits = hidden[:, 0].astype(jnp.float32) @ head
            return step + 1, tokens, cur, done, logits, cache, key

        done = jnp.zeros((b,), bool)
        state = (jnp.int32(0), tokens, lengths.astype(jnp.int32), done, logits, cache, key)
        _, tokens, cur, _, _, _, _ = jax.lax.while_loop(cond, body, state)
        return tokens, cur

    if mesh is None:
        return jax.jit(generate)
    rows, rep = sharding.batch_sharding(mesh), sharding.replicated(mesh)
    # None: the parameters keep the shardings they were placed with.
    return jax.jit(generate, in_shardings=(None, rows, rows, rep, rep, rep, rep), out_shardings=(rep, rep))


def _decode_fn(graphdef: nnx.GraphDef, max_new_tokens: int, eos_id: int | Sequence[int] | None,
               temperature: float, top_k: int, top_p: float, mesh: Mesh | None):
    """fn(params, prompts [B, P], lengths [B], key) -> (tokens [B, P +
    max_new_tokens], cursor [B]): row b's generated tokens are
    tokens[b, lengths[b]:cursor[b]], EOS included when it was emitted.
    temperature 0 is greedy (key unused). With a mesh, B divides by its
    data x fsdp size, and prompts/lengths are this process's rows of the
    batch (all of them with one process)."""
    decoder = _decoder(graphdef, max_new_tokens, _eos_ids(eos_id), temperature != 0.0, mesh)
    settings = (jnp.float32(temperature or 1.0), jnp.int32(top_k), jnp.float32(top_p))

    def generate(params, prompts, lengths, key):
        if mesh is not None:
            rows = len(prompts) * jax.process_count()
            placed = sharding.put_batch({"prompts": prompts, "lengths": lengths}, mesh, rows, ("prompts", "lengths"))
            prompts, lengths = placed["prompts"], placed["lengths"]
        return decoder(params, prompts, lengths, key, *settings)

    return generate


def _run(fn, params, prompts: Sequence[Sequence[int]], batch_size: int, multiple: int,
         eos_id: int | Sequence[int] | None, pad_id: int, keep_eos: bool, key: jax.Array,
         mesh: Mesh | None) -> list[list[int]]:
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (e.g. BOS)")
    if mesh is not None and batch_size % sharding.data_parallel_size(mesh):
        raise ValueError(f"batch_size {batch_size} is not divisible by the mesh's data x fsdp = "
                         f"{sharding.data_parallel_size(mesh)}")
    eos = set(_eos_ids(eos_id))
    out: list[list[int]] = [[] for _ in prompts]
    for planned in plan_by_length([len(p) for p in prompts], batch_size, multiple):
        chunk = planned.indices[planned.indices >= 0]
        tokens = np.full((planned.rows, planned.length), pad_id, np.int32)
        lengths = np.ones((planned.rows,), np.int32)
        for row, i in enumerate(chunk):
            tokens[row, : len(prompts[i])] = prompts[i]
            lengths[row] = len(prompts[i])
        # With several processes each feeds its own rows; all read every row back.
        local = slice(None) if mesh is None else sharding.local_rows(mesh, planned.rows)
        key, sub = jax.random.split(key)
        result = fn(params, tokens[local], lengths[local], sub)
        tokens, cur = (np.asarray(x) for x in result)
        for row, i in enumerate(chunk):
            new = tokens[row, lengths[row] : cur[row]].tolist()
            stop = next((j for j, t in enumerate(new) if t in eos), None)
            out[i] = new if stop is None else new[: stop + 1 if keep_eos else stop]
    return out


def decode(
    graphdef: nnx.GraphDef, params: Any, prompts: Sequence[Sequence[int]], max_new_tokens: int,
    eos_id: int | Sequence[int] | None, *, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
    seed: int = 0, batch_size: int = 8, multiple: int = 8, pad_id: int = 0, keep_eos: bool = False,
    mesh: Mesh | None = None,
) -> list[list[int]]:
    """The decode path: the new tokens of every prompt, cut before EOS (or
    including it with keep_eos), greedy when temperature is 0, else sampled
    from a key seeded by ``seed``. Held-out exact match
    (lpjax/evaluation/heldout.py), test-set answers (answers.py) and the
    lpjax judge (judge/backends.py) all decode here.

    Prompts are batched by length, ``batch_size`` rows a batch, each
    batch's prompt buffer a multiple of ``multiple`` long (jit compiles a
    few shapes only). With a mesh the parameters are placed by the sharding
    rules (a no-op for parameters already placed so) and each batch's rows
    split over data x fsdp, which ``batch_size`` must divide by."""
    if mesh is not None:
        params = sharding.shard_params(params, mesh)
    fn = _decode_fn(graphdef, max_new_tokens, eos_id, temperature, top_k, top_p, mesh)
    return _run(fn, params, prompts, batch_size, multiple, eos_id, pad_id, keep_eos, jax.random.key(seed), mesh)


def generate(model: nnx.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int,
             eos_id: int | Sequence[int] | None, **options: Any) -> list[list[int]]:
    """``decode`` with a module in place of (graphdef, params); the same
    keyword options."""
    graphdef, params = nnx.split(model)
    return decode(graphdef, params, prompts, max_new_tokens, eos_id, **options)
