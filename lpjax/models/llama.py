"""A Llama-style decoder in Flax NNX: RMSNorm, rotary positions, SwiGLU, GQA.

Names follow transformers' LlamaForCausalLM (embed_tokens, layers[i].self_attn.q_proj,
...) so that safetensors import/export is a rename plus a transpose. Every
parameter carries logical axis names; lpjax/sharding.py maps them to mesh axes.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    vocab_size: int
    hidden_size: int = 64
    intermediate_size: int = 172
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int | None = None
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = True
    max_position_embeddings: int = 2048
    # Parameters stay fp32 (master weights); activations and matmuls run in this dtype.
    compute_dtype: str = "float32"

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _param(rngs: nnx.Rngs, shape: tuple[int, ...], axes: tuple[str, ...], std: float) -> nnx.Param:
    init = nnx.with_partitioning(jax.nn.initializers.normal(std), axes)
    return nnx.Param(init(rngs.params(), shape, jnp.float32))


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, eps: float):
        self.weight = nnx.Param(jnp.ones((dim,), jnp.float32), out_sharding=("embed",))
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        # Normalize in fp32 whatever the compute dtype, as transformers does.
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (self.weight[...] * x32).astype(x.dtype)


def rope_tables(positions: jax.Array, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """cos/sin of shape [B, T, head_dim] in transformers' half-split layout."""
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    freqs = positions[..., None].astype(jnp.float32) * inv_freq
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb), jnp.sin(emb)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    # x: [B, T, heads, D]; cos/sin: [B, T, D]
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]
    return (x.astype(jnp.float32) * cos + rotated.astype(jnp.float32) * sin).astype(x.dtype)


class Linear(nnx.Module):
    """A bias-free projection whose kernel is stored [in, out]."""

    def __init__(self, din: int, dout: int, axes: tuple[str, str], rngs: nnx.Rngs, std: float = 0.02):
        self.kernel = _param(rngs, (din, dout), axes, std)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.kernel[...].astype(x.dtype)


class Attention(nnx.Module):
    def __init__(self, cfg: LlamaConfig, rngs: nnx.Rngs):
        d, h, kv = cfg.dim_per_head, cfg.num_heads, cfg.num_kv_heads
        self.cfg = cfg
        self.q_proj = Linear(cfg.hidden_size, h * d, ("embed", "q_heads"), rngs)
        self.k_proj = Linear(cfg.hidden_size, kv * d, ("embed", "kv_heads"), rngs)
        self.v_proj = Linear(cfg.hidden_size, kv * d, ("embed", "kv_heads"), rngs)
        self.o_proj = Linear(h * d, cfg.hidden_size, ("q_heads", "embed"), rngs)

    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array, mask: jax.Array) -> jax.Array:
        cfg = self.cfg
        b, t, _ = x.shape
        d, kv = cfg.dim_per_head, cfg.num_kv_heads
        groups = cfg.num_heads // kv
        q = apply_rope(self.q_proj(x).reshape(b, t, cfg.num_heads, d), cos, sin)
        k = apply_rope(self.k_proj(x).reshape(b, t, kv, d), cos, sin)
        v = self.v_proj(x).reshape(b, t, kv, d)
        # GQA: group query heads over their shared key/value head instead of
        # materializing repeated keys and values.
        q = q.reshape(b, t, kv, groups, d)
        scores = jnp.einsum("btkgd,bskd->bkgts", q, k, preferred_element_type=jnp.float32)
        scores = scores / jnp.sqrt(jnp.float32(d))
        scores = jnp.where(mask[:, None, None, :, :], scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(x.dtype)
        out = jnp.einsum("bkgts,bskd->btkgd", probs, v)
        return self.o_proj(out.reshape(b, t, cfg.num_heads * d))


class MLP(nnx.Module):
    def __init__(self, cfg: LlamaConfig, rngs: nnx.Rngs):
        self.gate_proj = Linear(cfg.hidden_size, cfg.intermediate_size, ("embed", "mlp"), rngs)
        self.up_proj = Linear(cfg.hidden_size, cfg.intermediate_size, ("embed", "mlp"), rngs)
        self.down_proj = Linear(cfg.intermediate_size, cfg.hidden_size, ("mlp", "embed"), rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nnx.Module):
    def __init__(self, cfg: LlamaConfig, rngs: nnx.Rngs):
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg, rngs)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg, rngs)

    def __call__(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaForCausalLM(nnx.Module):
    def __init__(self, cfg: LlamaConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed_tokens = _param(rngs, (cfg.vocab_size, cfg.hidden_size), ("vocab", "embed"), 0.02)
        self.layers = nnx.List([DecoderLayer(cfg, rngs) for _ in range(cfg.num_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        if not cfg.tie_word_embeddings:
            self.lm_head = _param(rngs, (cfg.hidden_size, cfg.vocab_size), ("embed", "vocab"), 0.02)

    def hidden_states(self, tokens: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """Final-norm hidden states [B, T, H] under a causal mask.

        Right padding needs no extra mask: with causal attention, pad tokens
        after a sequence never influence its positions.
        """
        dtype = jnp.dtype(self.cfg.compute_dtype)
        b, t = tokens.shape
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(t), (b, t))
        cos, sin = rope_tables(positions, self.cfg.dim_per_head, self.cfg.rope_theta)
        mask = jnp.broadcast_to(jnp.tril(jnp.ones((t, t), bool)), (b, t, t))
        x = jnp.take(self.embed_tokens[...], tokens, axis=0).astype(dtype)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.norm(x)

    def head_weight(self) -> jax.Array:
        """The output projection as [H, V] fp32, for the chunked loss."""
        if self.cfg.tie_word_embeddings:
            return self.embed_tokens[...].T
        return self.lm_head[...]

    def __call__(self, tokens: jax.Array) -> jax.Array:
        h = self.hidden_states(tokens).astype(jnp.float32)
        return h @ self.head_weight()
