"""The per-example response loss: the one kernel that training, scoring and
evaluation share.

It returns per-example (sum of token cross-entropies, token count) so callers
choose the reduction: training takes the token mean over the batch, scoring
the per-sample mean (docs/method.md).

What keeps it cheap (all exact: the per-example sums are the same up to fp32
rounding whichever of these a batch uses):

- Cross-entropy runs over chunks of about ``CHUNK_TOKENS`` positions, so a
  [batch, seq, vocab] fp32 logits tensor never exists: the largest
  temporaries of the loss are a few copies of one chunk's [B, chunk, V]
  logits (memory bound: ``loss_temp_bound``; tested on the compiled loss). Under autodiff each chunk's logits are recomputed in
  the backward pass instead of being saved (``jax.checkpoint``), so training
  keeps the same bound.
- ``resp_pos`` in the batch (lpjax/data/batching.py): the LM head (vocab x
  hidden, a fifth of a small model's FLOPs) runs only at the positions that
  predict a response token, not at prompt or padding positions.
- A shared prefix (``prefix_id`` + the ``prefix_tokens``/``prefix_len``
  table): rows hold only the tokens after their prefix; the prefixes' keys
  and values are computed once per batch (or once per scoring pass:
  ``prefix_kv``) and every row attends to its own, through the model's
  KV-cache interface (``init_cache``/``forward_cached``).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

# Positions per cross-entropy chunk, summed over the batch rows: a [256, V]
# chunk of logits (50 MB at V = 50K) measured fastest on a 2-core CPU (the
# matmul stays efficient, the logsumexp pass reads it while it is warm);
# 2048 was 25 % slower.
CHUNK_TOKENS = 256


def chunk_positions(batch: int, seq: int | None = None, chunk_tokens: int = CHUNK_TOKENS) -> int:
    """Positions per chunk for a batch of ``batch`` rows: about
    ``chunk_tokens`` over all rows, and with ``seq`` evened out so the
    chunks tile [0, seq) with as little padding as possible."""
    chunk = max(1, chunk_tokens // max(batch, 1))
    if seq is None or seq <= chunk:
        return chunk if seq is None else seq
    n = -(-seq // chunk)
    return -(-seq // n)


def loss_temp_bound(batch: int, seq: int, hidden: int, vocab: int, chunk: int | None = None,
                    grad: bool = False) -> int:
    """Bytes the cross-entropy part of ``example_loss`` may need for
    temporaries on fp32 [batch, seq] inputs: a few copies of one chunk's
    logits [B, chunk, V] (3 for the loss, 4 for its gradient, which
    recomputes the logits and forms the softmax and its cotangent) plus the
    chunked copies of its inputs. Full logits would be B x T x V x 4 bytes:
    the chunk term does not grow with T."""
    chunk = min(chunk or chunk_positions(batch, seq), seq)
    copies = 4 if grad else 3
    return 4 * (copies * batch * chunk * vocab + 4 * batch * (seq + chunk) * (hidden + 2))


def _chunked(hidden: jax.Array, targets: jax.Array, mask: jax.Array, chunk: int | None):
    """[B, T, ...] inputs as [n, B, chunk, ...] position chunks (T padded to
    n x chunk); rows stay the leading axis of each chunk, so a batch split
    over devices stays split."""
    b, t, h = hidden.shape
    chunk = min(chunk or chunk_positions(b, t), t)
    pad = (-t) % chunk
    if pad:
        hidden = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0)))
        targets = jnp.pad(targets, ((0, 0), (0, pad)))
        mask = jnp.pad(mask, ((0, 0), (0, pad)))
    n = (t + pad) // chunk
    return (hidden.reshape(b, n, chunk, h).swapaxes(0, 1), targets.reshape(b, n, chunk).swapaxes(0, 1),
            mask.reshape(b, n, chunk).swapaxes(0, 1).astype(jnp.float32))


def _unchunk(x: jax.Array, t: int) -> jax.Array:
    """[n, B, chunk, ...] -> [B, t, ...] (the padding dropped)."""
    n, b, c = x.shape[:3]
    return x.swapaxes(0, 1).reshape(b, n * c, *x.shape[3:])[:, :t]


def _chunk_logits(hc: jax.Array, tc: jax.Array, head32: jax.Array):
    """A chunk's fp32 logits [B, c, V], their logsumexp and the token losses [B, c]."""
    logits = jnp.einsum("bch,hv->bcv", hc.astype(jnp.float32), head32)
    lse = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, tc[..., None], axis=-1)[..., 0]
    return logits, lse, lse - picked


def chunked_cross_entropy(
    hidden: jax.Array, head: jax.Array, targets: jax.Array, mask: jax.Array, chunk: int | None = None
) -> tuple[jax.Array, jax.Array]:
    """Masked token cross-entropy summed per row.

    hidden [B, T, H], head [H, V], targets [B, T] (the token each position
    predicts), mask [B, T] (1 where that prediction counts). Returns
    (loss_sum [B], count [B]), both fp32. ``chunk``: positions per chunk
    (default: about CHUNK_TOKENS positions over all rows).
    """
    b = hidden.shape[0]
    xs = _chunked(hidden, targets, mask, chunk)
    head32 = head.astype(jnp.float32)

    # Recomputed in the backward pass: otherwise autodiff saves every
    # chunk's logits, B x T x V floats in all. (Training takes
    # weighted_cross_entropy instead, which needs no recomputation.)
    @jax.checkpoint
    def chunk_loss(hc, tc, mc, head32):
        return jnp.sum(_chunk_logits(hc, tc, head32)[2] * mc, axis=-1)

    def body(total, x):
        hc, tc, mc = x
        return total + chunk_loss(hc, tc, mc, head32), None

    loss_sum, _ = jax.lax.scan(body, jnp.zeros((b,), jnp.float32), xs)
    return loss_sum, jnp.sum(mask.astype(jnp.float32), axis=-1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def weighted_cross_entropy(hidden: jax.Array, head: jax.Array, targets: jax.Array, mask: jax.Array,
                           weights: jax.Array, chunk: int | None = None) -> jax.Array:
    """sum over rows b of weights[b] x (masked token cross-entropy of row b):
    the training loss (weights = 1 / the batch's response tokens), as a
    scalar whose gradient costs one LM-head matmul less than autodiff of
    ``chunked_cross_entropy``.

    The forward pass computes each chunk's logits once and, while they are
    in cache, their cotangent (softmax - one_hot) x mask x weight and the
    two gradient matmuls: the gradients with respect to ``hidden`` and
    ``head`` become residuals, and the backward pass only scales them. Three
    [B, chunk, H] x [H, V] matmuls per chunk instead of four (forward,
    recomputation, two gradients), no logits saved. The VJP is exact in
    every differentiable input (hidden, head, mask, weights); the value is
    the same as ``sum(weights * chunked_cross_entropy(...)[0])``."""
    return _weighted_ce_fwd(hidden, head, targets, mask, weights, chunk)[0]


def _weighted_ce_fwd(hidden, head, targets, mask, weights, chunk):
    b, t, _ = hidden.shape
    xs = _chunked(hidden, targets, mask, chunk)
    head32 = head.astype(jnp.float32)
    w32 = weights.astype(jnp.float32)
    vocab = head.shape[1]

    def body(dhead, x):
        hc, tc, mc = x
        logits, lse, tok = _chunk_logits(hc, tc, head32)
        coef = (mc * w32[:, None])[..., None]
        onehot = jnp.arange(vocab, dtype=tc.dtype) == tc[..., None]
        dlogits = (jnp.exp(logits - lse[..., None]) - onehot) * coef
        dh = jnp.einsum("bcv,hv->bch", dlogits, head32)
        dhead = dhead + jnp.einsum("bch,bcv->hv", hc.astype(jnp.float32), dlogits)
        return dhead, (tok, dh)

    dhead, (tok, dh) = jax.lax.scan(body, jnp.zeros(head.shape, jnp.float32), xs)
    tok, dh = _unchunk(tok, t), _unchunk(dh, t)
    mask32 = mask.astype(jnp.float32)
    value = jnp.sum(jnp.sum(tok * mask32, axis=-1) * w32)
    residuals = (dh.astype(hidden.dtype), dhead.astype(head.dtype), tok, mask, weights)
    return value, residuals


def _weighted_ce_bwd(chunk, residuals, g):
    dh, dhead, tok, mask, weights = residuals
    d_mask = (g * tok * weights.astype(jnp.float32)[:, None]).astype(mask.dtype)
    d_weights = (g * jnp.sum(tok * mask.astype(jnp.float32), axis=-1)).astype(weights.dtype)
    return (g * dh).astype(dh.dtype), (g * dhead).astype(dhead.dtype), None, d_mask, d_weights


weighted_cross_entropy.defvjp(_weighted_ce_fwd, _weighted_ce_bwd)


def prefix_kv(model, prefix_tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Keys and values of the prefix table ``prefix_tokens`` [K, P] (row 0
    the empty prefix, not computed: zeros), a model cache (keys, values),
    each [layers, K, P, kv_heads, head_dim]. Callers whose parameters stay
    fixed over many batches (scoring) may compute this once and pass it as
    batch["prefix_kv"]."""
    k, p = prefix_tokens.shape
    if k == 1:  # no real prefix
        return model.init_cache(1, p)
    real = prefix_tokens[1:]
    _, cache = model.forward_cached(real, jnp.broadcast_to(jnp.arange(p), (k - 1, p)), model.init_cache(k - 1, p),
                                    True)
    return tuple(jnp.concatenate([jnp.zeros((x.shape[0], 1) + x.shape[2:], x.dtype), x], axis=1) for x in cache)


def hidden_after_prefix(model, tokens: jax.Array, prefix_id: jax.Array, prefix_tokens: jax.Array,
                        prefix_len: jax.Array, kv: tuple[jax.Array, jax.Array] | None = None) -> jax.Array:
    """Hidden states [B, T, H] of rows that continue a shared prefix.

    Row b holds the tokens that follow prefix ``prefix_id[b]`` (a row of the
    table ``prefix_tokens`` [K, P], ``prefix_len`` [K] tokens long; row 0,
    length 0 = no prefix), so its token t sits at position prefix_len + t.
    The prefixes run once (``prefix_kv``, unless ``kv`` already holds it),
    filling a KV cache; each row gets a copy of its prefix's keys/values in
    slots 0..P-1 of a cache of P + T slots, and the rows run as one
    multi-token decode step (``prefill=False``): position p attends to every
    slot <= p, i.e. its prefix and its own row causally.

    Slots a shorter prefix leaves unused are overwritten by the row's own
    tokens or lie beyond every query's position, so they are never read.
    """
    b, t = tokens.shape
    if kv is None:
        kv = prefix_kv(model, prefix_tokens)
    positions = prefix_len[prefix_id][:, None] + jnp.arange(t)[None, :]
    limit = model.max_length()
    if limit is not None:
        # Learned position tables: padding positions past the table read its
        # last row instead of out of bounds (NaN). Only padding and a row's
        # last real token (which predicts nothing) can be affected.
        positions = jnp.minimum(positions, limit - 1)

    def rows_cache(x):  # [layers, K, P, ...] -> [layers, B, P + T, ...]
        rows = jnp.take(x, prefix_id, axis=1)
        return jnp.concatenate([rows, jnp.zeros(rows.shape[:2] + (t,) + x.shape[3:], x.dtype)], axis=2)

    cache = tuple(rows_cache(x) for x in kv)
    hidden, _ = model.forward_cached(tokens, positions, cache, False)
    return hidden


def head_inputs(model, batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(hidden [B, R, H], targets [B, R], mask [B, R], count [B]): what the LM
    head sees for a batch from lpjax.data.batching (keys tokens, targets,
    loss_mask; optional resp_pos, and prefix_id with prefix_tokens/prefix_len,
    and optionally the precomputed prefix_kv(model, prefix_tokens) as
    prefix_kv). R is the batch length, or resp_pos's; count is each row's
    response token count."""
    tokens = batch["tokens"]
    if "prefix_id" in batch:
        hidden = hidden_after_prefix(model, tokens, batch["prefix_id"], batch["prefix_tokens"], batch["prefix_len"],
                                     batch.get("prefix_kv"))
    else:
        hidden = model.hidden_states(tokens)
    targets, mask = batch["targets"], batch["loss_mask"]
    count = jnp.sum(mask.astype(jnp.float32), axis=-1)
    if "resp_pos" in batch:
        # Only the positions that predict a response token reach the head;
        # filler entries point at a position whose mask is 0.
        pos = batch["resp_pos"]
        hidden = jnp.take_along_axis(hidden, pos[..., None], axis=1)
        targets = jnp.take_along_axis(targets, pos, axis=1)
        mask = jnp.take_along_axis(mask, pos, axis=1)
    return hidden, targets, mask, count


def example_loss(model, batch: dict[str, jax.Array], chunk: int | None = None) -> tuple[jax.Array, jax.Array]:
    """Per-example (loss sum, response token count) of a causal LM on a batch
    (``head_inputs``): what scoring and evaluation take."""
    hidden, targets, mask, count = head_inputs(model, batch)
    loss_sum, _ = chunked_cross_entropy(hidden, model.head_weight(), targets, mask, chunk)
    return loss_sum, count


def token_mean_loss(model, batch: dict[str, jax.Array], total: jax.Array, chunk: int | None = None) -> jax.Array:
    """sum over the batch's response tokens of their cross-entropy, / total:
    the training loss (total = the whole batch's response tokens, so
    micro-batches add up to it). Equal to sum(example_loss(...)[0]) / total;
    its gradient comes from ``weighted_cross_entropy`` (one LM-head matmul
    less than autodiff of the chunked loss)."""
    hidden, targets, mask, _ = head_inputs(model, batch)
    weights = jnp.broadcast_to(1.0 / jnp.asarray(total, jnp.float32), hidden.shape[:1])
    return weighted_cross_entropy(hidden, model.head_weight(), targets, mask, weights, chunk)


def mean_loss(loss_sum: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Per-sample mean token loss; 0 for a sample with no response token left."""
    return np.where(count > 0, loss_sum / np.maximum(count, 1), 0.0)


def perplexity(loss_sum: np.ndarray, count: np.ndarray) -> np.ndarray:
    """exp(mean token loss); 1.0 for a sample with no response token left (docs/method.md)."""
    return np.exp(mean_loss(loss_sum, count))
