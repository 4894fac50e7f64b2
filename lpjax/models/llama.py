"""A Llama-style decoder in Flax NNX: RMSNorm, rotary positions, SwiGLU, GQA.

Names follow transformers' LlamaForCausalLM (embed_tokens, layers[i].self_attn.q_proj,
...) so that safetensors import/export is a rename plus a transpose
(`hf_tensor_map`). Every parameter carries logical axis names;
lpjax/sharding.py maps them to mesh axes. Mistral checkpoints are this
model plus a sliding attention window. SmolLM2, TinyLlama and the Llama-2/3
families are plain Llama.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lpjax.models.common import (CausalLM, LayerCache, Linear, activation, const_param, normal_param,
                                 self_attention, stack_layers)
from lpjax.models.convert import TRANSPOSE, Tensor

ROPE_TYPES = ("default", "linear", "dynamic", "llama3")


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
    attention_bias: bool = False
    mlp_bias: bool = False
    hidden_act: str = "silu"
    # Rotary scaling (transformers' rope_parameters / old rope_scaling):
    # "default", "linear" (positions / factor), "dynamic" (NTK, grows the base
    # past max_position_embeddings), "llama3" (Llama 3.1 frequency bands).
    rope_type: str = "default"
    rope_factor: float = 1.0
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_max_position_embeddings: int | None = None
    sliding_window: int | None = None  # Mistral
    model_type: str = "llama"
    # The config.json this came from (JSON text), so save_hf can write it back;
    # not part of equality or hashing.
    hf_source: str | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.rope_type not in ROPE_TYPES:
            raise ValueError(f"unsupported rope_type {self.rope_type!r}; supported: {', '.join(ROPE_TYPES)}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}")

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "hf_source"}

    @classmethod
    def from_hf(cls, c: dict[str, Any], compute_dtype: str = "float32") -> "LlamaConfig":
        """From a transformers config.json (old rope_theta/rope_scaling keys or v5 rope_parameters)."""
        rope = dict(c.get("rope_scaling") or c.get("rope_parameters") or {})
        if any(isinstance(v, dict) for v in rope.values()):
            raise ValueError("per-layer-type rope_parameters are not supported for Llama")
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in ROPE_TYPES:
            raise ValueError(f"unsupported rope type {rope_type!r} in config.json; supported: {', '.join(ROPE_TYPES)}")
        heads = c["num_attention_heads"]
        if c.get("hidden_act", "silu") not in ("silu", "swish"):
            activation(c["hidden_act"])  # fails on unknown names
        sliding = c.get("sliding_window") if c.get("model_type") == "mistral" else None
        return cls(
            vocab_size=c["vocab_size"], hidden_size=c["hidden_size"], intermediate_size=c["intermediate_size"],
            num_layers=c["num_hidden_layers"], num_heads=heads,
            num_kv_heads=c.get("num_key_value_heads") or heads, head_dim=c.get("head_dim"),
            rope_theta=float(rope.get("rope_theta", c.get("rope_theta", 10000.0))),
            rms_norm_eps=c.get("rms_norm_eps", 1e-6),
            tie_word_embeddings=c.get("tie_word_embeddings", False),
            max_position_embeddings=c.get("max_position_embeddings", 2048), compute_dtype=compute_dtype,
            attention_bias=c.get("attention_bias", False), mlp_bias=c.get("mlp_bias", False),
            hidden_act=c.get("hidden_act", "silu"), rope_type=rope_type, rope_factor=float(rope.get("factor", 1.0)),
            rope_low_freq_factor=float(rope.get("low_freq_factor", 1.0)),
            rope_high_freq_factor=float(rope.get("high_freq_factor", 4.0)),
            rope_original_max_position_embeddings=rope.get("original_max_position_embeddings"),
            sliding_window=sliding, model_type=c.get("model_type", "llama"),
        )

    def to_hf(self) -> dict[str, Any]:
        rope: dict[str, Any] = {"rope_type": self.rope_type, "rope_theta": self.rope_theta}
        if self.rope_type != "default":
            rope["factor"] = self.rope_factor
        if self.rope_type == "llama3":
            rope.update(low_freq_factor=self.rope_low_freq_factor, high_freq_factor=self.rope_high_freq_factor,
                        original_max_position_embeddings=self._original_max())
        out = {
            "architectures": ["MistralForCausalLM" if self.model_type == "mistral" else "LlamaForCausalLM"],
            "model_type": self.model_type, "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size, "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads, "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.dim_per_head, "rms_norm_eps": self.rms_norm_eps, "hidden_act": self.hidden_act,
            "max_position_embeddings": self.max_position_embeddings, "tie_word_embeddings": self.tie_word_embeddings,
            "rope_parameters": rope,
        }
        if self.model_type == "mistral":
            out["sliding_window"] = self.sliding_window
        else:
            out.update(attention_bias=self.attention_bias, mlp_bias=self.mlp_bias)
        return out

    def _original_max(self) -> int:
        return self.rope_original_max_position_embeddings or self.max_position_embeddings


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def rms_norm(x: jax.Array, weight: jax.Array, eps: float) -> jax.Array:
    """weight * x / rms(x), normalized in fp32 whatever the compute dtype, as
    transformers does; returned in x's dtype.

    The backward is autodiff's math written out from x alone: autodiff keeps
    the normalized x, x times the weight and two [tokens, 1] statistics per
    norm until the backward (a SmolLM2 [8, 336] train step's temporaries:
    3.98 -> 3.63 GiB)."""
    x32 = x.astype(jnp.float32)
    return (weight * (x32 * _inv_rms(x32, eps))).astype(x.dtype)


def _inv_rms(x32: jax.Array, eps: float) -> jax.Array:
    return jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)


def _rms_norm_fwd(x, weight, eps):
    return rms_norm(x, weight, eps), (x, weight)


def _rms_norm_bwd(eps, res, d_y):
    x, weight = res
    x32 = x.astype(jnp.float32)
    inv = _inv_rms(x32, eps)
    normed = x32 * inv
    d_y32 = d_y.astype(jnp.float32)
    d_weight = jnp.sum((d_y32 * normed).reshape(-1, x.shape[-1]), axis=0)
    d_normed = d_y32 * weight
    d_x = inv * (d_normed - normed * jnp.mean(d_normed * normed, axis=-1, keepdims=True))
    return d_x.astype(x.dtype), d_weight.astype(weight.dtype)


rms_norm.defvjp(_rms_norm_fwd, _rms_norm_bwd)


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, eps: float):
        self.weight = const_param(jnp.ones((dim,)), ("norm",))
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        return rms_norm(x, self.weight[...], self.eps)


def rope_inv_freq(cfg: LlamaConfig) -> np.ndarray:
    """Inverse frequencies [head_dim / 2] in float32, computed as transformers
    does (modeling_rope_utils) for the static rope types."""
    dim = cfg.dim_per_head
    inv = (1.0 / (np.float32(cfg.rope_theta) ** (np.arange(0, dim, 2).astype(np.float32) / np.float32(dim))))
    inv = inv.astype(np.float32)
    if cfg.rope_type == "linear":
        inv = inv / np.float32(cfg.rope_factor)
    elif cfg.rope_type == "llama3":
        factor, low, high = cfg.rope_factor, cfg.rope_low_freq_factor, cfg.rope_high_freq_factor
        old = cfg._original_max()
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > old / low, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < old / high) & ~(wavelen > old / low)
        inv = np.where(medium, smoothed, scaled).astype(np.float32)
    return inv


def rope_tables(positions: jax.Array, cfg: LlamaConfig) -> tuple[jax.Array, jax.Array]:
    """cos/sin of shape [B, T, head_dim] in transformers' half-split layout."""
    inv_freq = jnp.asarray(rope_inv_freq(cfg))
    if cfg.rope_type == "dynamic":
        # NTK: past max_position_embeddings the base grows with the longest
        # position in the call, as transformers' dynamic_rope_update does.
        dim, maxpos, factor = cfg.dim_per_head, cfg.max_position_embeddings, cfg.rope_factor
        seq_len = jnp.maximum(jnp.max(positions) + 1, maxpos).astype(jnp.float32)
        base = cfg.rope_theta * ((factor * seq_len / maxpos) - (factor - 1)) ** (dim / (dim - 2))
        inv_freq = 1.0 / (base ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))
    freqs = positions[..., None].astype(jnp.float32) * inv_freq
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb), jnp.sin(emb)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    # x: [B, T, heads, D]; cos/sin: [B, T, D]
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]
    return (x.astype(jnp.float32) * cos + rotated.astype(jnp.float32) * sin).astype(x.dtype)


class Attention(nnx.Module):
    def __init__(self, cfg: LlamaConfig, rngs: nnx.Rngs):
        d, h, kv, bias = cfg.dim_per_head, cfg.num_heads, cfg.num_kv_heads, cfg.attention_bias
        self.cfg = cfg
        self.q_proj = Linear(cfg.hidden_size, h * d, ("embed", "q_heads"), rngs, bias=bias)
        self.k_proj = Linear(cfg.hidden_size, kv * d, ("embed", "kv_heads"), rngs, bias=bias)
        self.v_proj = Linear(cfg.hidden_size, kv * d, ("embed", "kv_heads"), rngs, bias=bias)
        self.o_proj = Linear(h * d, cfg.hidden_size, ("q_heads", "embed"), rngs, bias=bias)

    def __call__(self, x, cos, sin, positions, cache: LayerCache | None = None, prefill: bool = True):
        cfg = self.cfg
        b, t, _ = x.shape
        d, kv = cfg.dim_per_head, cfg.num_kv_heads
        q = apply_rope(self.q_proj(x).reshape(b, t, cfg.num_heads, d), cos, sin)
        k = apply_rope(self.k_proj(x).reshape(b, t, kv, d), cos, sin)
        v = self.v_proj(x).reshape(b, t, kv, d)
        out, cache = self_attention(q, k, v, positions, cache, prefill, d**-0.5, cfg.sliding_window)
        return self.o_proj(out), cache


class MLP(nnx.Module):
    def __init__(self, cfg: LlamaConfig, rngs: nnx.Rngs):
        bias = cfg.mlp_bias
        self.gate_proj = Linear(cfg.hidden_size, cfg.intermediate_size, ("embed", "mlp"), rngs, bias=bias)
        self.up_proj = Linear(cfg.hidden_size, cfg.intermediate_size, ("embed", "mlp"), rngs, bias=bias)
        self.down_proj = Linear(cfg.intermediate_size, cfg.hidden_size, ("mlp", "embed"), rngs, bias=bias)
        self.act = activation(cfg.hidden_act)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down_proj.gated(self.act, self.gate_proj(x), self.up_proj(x))


class DecoderLayer(nnx.Module):
    def __init__(self, cfg: LlamaConfig, rngs: nnx.Rngs):
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg, rngs)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg, rngs)

    def __call__(self, x, cos, sin, positions, cache=None, prefill=True):
        attn, cache = self.self_attn(self.input_layernorm(x), cos, sin, positions, cache, prefill)
        x = x + attn
        return x + self.mlp(self.post_attention_layernorm(x)), cache


class LlamaForCausalLM(CausalLM):
    def __init__(self, cfg: LlamaConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed_tokens = normal_param(rngs, (cfg.vocab_size, cfg.hidden_size), ("vocab", "embed"), 0.02)
        self.layers = stack_layers(cfg.num_layers, lambda r: DecoderLayer(cfg, r), rngs)
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        if not cfg.tie_word_embeddings:
            self.lm_head = normal_param(rngs, (cfg.hidden_size, cfg.vocab_size), ("embed", "vocab"), 0.02)

    def forward_cached(self, tokens, positions, cache=None, prefill=True):
        x = jnp.take(self.embed_tokens[...], tokens, axis=0).astype(self.compute_dtype)
        cos, sin = rope_tables(positions, self.cfg)
        x, cache = self.run_layers(x, cache, cos, sin, positions, prefill=prefill)
        return self.norm(x), cache


def hf_tensor_map(cfg: LlamaConfig) -> dict[str, Tensor]:
    """transformers tensor name -> where it lives in LlamaForCausalLM."""
    out = {"model.embed_tokens.weight": Tensor(("embed_tokens",)), "model.norm.weight": Tensor(("norm", "weight"))}
    if not cfg.tie_word_embeddings:
        out["lm_head.weight"] = Tensor(("lm_head",), TRANSPOSE)
    linears = {"self_attn": (("q_proj", "k_proj", "v_proj", "o_proj"), cfg.attention_bias),
               "mlp": (("gate_proj", "up_proj", "down_proj"), cfg.mlp_bias)}
    for i in range(cfg.num_layers):
        p = f"model.layers.{i}."
        for norm in ("input_layernorm", "post_attention_layernorm"):
            out[p + norm + ".weight"] = Tensor(("layers", norm, "weight"), layer=i)
        for block, (names, bias) in linears.items():
            for name in names:
                out[f"{p}{block}.{name}.weight"] = Tensor(("layers", block, name, "kernel"), TRANSPOSE, i)
                if bias:
                    out[f"{p}{block}.{name}.bias"] = Tensor(("layers", block, name, "bias"), layer=i)
    return out


# Buffers some checkpoints carry that are recomputed here, not loaded.
HF_IGNORED = (r"(^|\.)rotary_emb\.inv_freq$",)
