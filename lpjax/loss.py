"""The per-example response loss: the one kernel that training, scoring and
evaluation share.

It returns per-example (sum of token cross-entropies, token count) so callers
choose the reduction: training takes the token mean over the batch, scoring
the per-sample mean (DESIGN.md §1). Cross-entropy runs over chunks of
positions so a [batch, seq, vocab] fp32 logits tensor never exists.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def chunked_cross_entropy(
    hidden: jax.Array, head: jax.Array, targets: jax.Array, mask: jax.Array, chunk: int = 128
) -> tuple[jax.Array, jax.Array]:
    """Masked token cross-entropy summed per row.

    hidden [B, T, H], head [H, V], targets [B, T] (the token each position
    predicts), mask [B, T] (1 where that prediction counts). Returns
    (loss_sum [B], count [B]), both fp32.
    """
    b, t, h = hidden.shape
    chunk = min(chunk, t)
    pad = (-t) % chunk
    if pad:
        hidden = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0)))
        targets = jnp.pad(targets, ((0, 0), (0, pad)))
        mask = jnp.pad(mask, ((0, 0), (0, pad)))
    n = (t + pad) // chunk
    # [n, B, chunk, ...]: scan over position chunks.
    xs = (
        hidden.reshape(b, n, chunk, h).swapaxes(0, 1),
        targets.reshape(b, n, chunk).swapaxes(0, 1),
        mask.reshape(b, n, chunk).swapaxes(0, 1).astype(jnp.float32),
    )
    head32 = head.astype(jnp.float32)

    def body(total, x):
        hc, tc, mc = x
        logits = jnp.einsum("bch,hv->bcv", hc.astype(jnp.float32), head32)
        lse = jax.nn.logsumexp(logits, axis=-1)
        picked = jnp.take_along_axis(logits, tc[..., None], axis=-1)[..., 0]
        return total + jnp.sum((lse - picked) * mc, axis=-1), None

    loss_sum, _ = jax.lax.scan(body, jnp.zeros((b,), jnp.float32), xs)
    return loss_sum, jnp.sum(mask.astype(jnp.float32), axis=-1)


def example_loss(model, batch: dict[str, jax.Array], chunk: int = 128) -> tuple[jax.Array, jax.Array]:
    """Per-example (loss sum, response token count) of a causal LM on a batch
    from lpjax.data.batching (keys tokens, targets, loss_mask)."""
    hidden = model.hidden_states(batch["tokens"])
    return chunked_cross_entropy(hidden, model.head_weight(), batch["targets"], batch["loss_mask"], chunk)


def mean_loss(loss_sum: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Per-sample mean token loss; 0 for a sample with no response token left."""
    return np.where(count > 0, loss_sum / np.maximum(count, 1), 0.0)


def perplexity(loss_sum: np.ndarray, count: np.ndarray) -> np.ndarray:
    """exp(mean token loss); 1.0 for a sample with no response token left (DESIGN.md §1)."""
    return np.exp(mean_loss(loss_sum, count))
