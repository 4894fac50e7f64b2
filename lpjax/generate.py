"""Greedy decoding for a causal decoder, without a KV cache yet.

Each step reruns the model over a fixed-size buffer and reads the position
just before each row's write cursor. Causal attention makes the junk to the
right of a cursor invisible to it, so rows of different prompt lengths
decode together in one jitted loop.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lpjax.data.batching import round_up


def make_greedy_fn(graphdef: nnx.GraphDef, max_new_tokens: int, eos_id: int):
    @jax.jit
    def greedy(params, tokens, lengths):
        model = nnx.merge(graphdef, params)
        rows = jnp.arange(tokens.shape[0])

        def body(_, carry):
            tokens, cur, done = carry
            hidden = model.hidden_states(tokens)[rows, cur - 1].astype(jnp.float32)
            nxt = jnp.argmax(hidden @ model.head_weight(), axis=-1).astype(tokens.dtype)
            write = ~done & (cur < tokens.shape[1])
            tokens = tokens.at[rows, jnp.minimum(cur, tokens.shape[1] - 1)].set(
                jnp.where(write, nxt, tokens[rows, jnp.minimum(cur, tokens.shape[1] - 1)])
            )
            done = done | (write & (nxt == eos_id)) | (cur + 1 >= tokens.shape[1])
            return tokens, cur + write.astype(cur.dtype), done

        done = jnp.zeros(tokens.shape[0], bool)
        return jax.lax.fori_loop(0, max_new_tokens, body, (tokens, lengths, done))[:2]

    return greedy


def greedy_generate(
    greedy_fn, params, prompts: Sequence[Sequence[int]], max_new_tokens: int, batch_size: int, multiple: int,
    eos_id: int, pad_id: int = 0,
) -> list[list[int]]:
    """Generated token ids per prompt (up to and excluding EOS)."""
    out: list[list[int]] = [[] for _ in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        length = round_up(max(len(prompts[i]) for i in chunk) + max_new_tokens, multiple)
        tokens = np.full((batch_size, length), pad_id, np.int32)
        lengths = np.ones((batch_size,), np.int32)
        for row, i in enumerate(chunk):
            tokens[row, : len(prompts[i])] = prompts[i]
            lengths[row] = len(prompts[i])
        tokens, cur = (np.asarray(x) for x in greedy_fn(params, tokens, lengths))
        for row, i in enumerate(chunk):
            new = tokens[row, lengths[row] : cur[row]].tolist()
            out[i] = new[: new.index(eos_id)] if eos_id in new else new
    return out
