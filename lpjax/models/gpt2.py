"""OpenAI's GPT-2 in Flax NNX, named after transformers' GPT2LMHeadModel.

GPT-2 stores its projections as Conv1D, i.e. already [in, out] like lpjax
kernels, so they load without a transpose. The fused ``c_attn`` [H, 3H] is
kept fused but shaped [H, 3, H] here, so the heads axis carries its own
logical name. Learned positions (no offset), pre-LN blocks, a final ``ln_f``,
gelu_new, tied head.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from lpjax.models.common import (CausalLM, LayerNorm, Linear, activation, const_param, normal_param,
                                 self_attention, stack_layers)
from lpjax.models.convert import SPLIT_LAST, TRANSPOSE, Tensor


@dataclasses.dataclass(frozen=True)
class GPT2Config:
    vocab_size: int
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int | None = None  # n_inner; None = 4 * hidden_size
    max_position_embeddings: int = 1024
    activation_function: str = "gelu_new"
    layer_norm_epsilon: float = 1e-5
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    tie_word_embeddings: bool = True
    compute_dtype: str = "float32"
    # The config.json this came from (JSON text), so save_hf can write it back;
    # not part of equality or hashing.
    hf_source: str | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def dim_per_head(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def inner_dim(self) -> int:
        return self.intermediate_size or 4 * self.hidden_size

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "hf_source"}

    @classmethod
    def from_hf(cls, c: dict[str, Any], compute_dtype: str = "float32") -> "GPT2Config":
        activation(c.get("activation_function", "gelu_new"))
        if c.get("add_cross_attention"):
            raise ValueError("GPT-2 with cross-attention is not a causal LM checkpoint lpjax supports")
        return cls(
            vocab_size=c["vocab_size"], hidden_size=c.get("n_embd", c.get("hidden_size")),
            num_layers=c.get("n_layer", c.get("num_hidden_layers")), num_heads=c.get("n_head", c.get("num_attention_heads")),
            intermediate_size=c.get("n_inner"), max_position_embeddings=c.get("n_positions", 1024),
            activation_function=c.get("activation_function", "gelu_new"),
            layer_norm_epsilon=c.get("layer_norm_epsilon", 1e-5),
            scale_attn_weights=c.get("scale_attn_weights", True),
            scale_attn_by_inverse_layer_idx=c.get("scale_attn_by_inverse_layer_idx", False),
            tie_word_embeddings=c.get("tie_word_embeddings", True), compute_dtype=compute_dtype,
        )

    def to_hf(self) -> dict[str, Any]:
        return {
            "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": self.vocab_size,
            "n_embd": self.hidden_size, "n_layer": self.num_layers, "n_head": self.num_heads,
            "n_inner": self.intermediate_size, "n_positions": self.max_position_embeddings,
            "activation_function": self.activation_function, "layer_norm_epsilon": self.layer_norm_epsilon,
            "scale_attn_weights": self.scale_attn_weights,
            "scale_attn_by_inverse_layer_idx": self.scale_attn_by_inverse_layer_idx,
            "tie_word_embeddings": self.tie_word_embeddings,
        }


class FusedQKV(nnx.Module):
    """GPT-2's c_attn: one [H, 3, H] kernel producing q, k and v."""

    def __init__(self, h: int, rngs: nnx.Rngs):
        self.kernel = normal_param(rngs, (h, 3, h), ("embed", None, "q_heads"), 0.02)
        self.bias = const_param(jnp.zeros((3, h)), (None, "q_heads"))

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.einsum("bth,hkd->btkd", x, self.kernel[...].astype(x.dtype)) + self.bias[...].astype(x.dtype)


class GPT2Attention(nnx.Module):
    def __init__(self, cfg: GPT2Config, rngs: nnx.Rngs):
        self.cfg = cfg
        self.c_attn = FusedQKV(cfg.hidden_size, rngs)
        self.c_proj = Linear(cfg.hidden_size, cfg.hidden_size, ("q_heads", "embed"), rngs, bias=True)
        self.scale = cfg.dim_per_head**-0.5 if cfg.scale_attn_weights else 1.0

    def __call__(self, x, positions, index, cache=None, prefill=True):
        b, t, _ = x.shape
        n, d = self.cfg.num_heads, self.cfg.dim_per_head
        qkv = self.c_attn(x)
        q, k, v = (qkv[:, :, i].reshape(b, t, n, d) for i in range(3))
        if self.cfg.scale_attn_by_inverse_layer_idx:
            # The layer index is traced (one scanned layer serves all), so
            # the extra 1 / (index + 1) scales the queries, not the static scale.
            q = (q.astype(jnp.float32) / (index + 1)).astype(q.dtype)
        out, cache = self_attention(q, k, v, positions, cache, prefill, self.scale)
        return self.c_proj(out), cache


class GPT2MLP(nnx.Module):
    def __init__(self, cfg: GPT2Config, rngs: nnx.Rngs):
        self.c_fc = Linear(cfg.hidden_size, cfg.inner_dim, ("embed", "mlp"), rngs, bias=True)
        self.c_proj = Linear(cfg.inner_dim, cfg.hidden_size, ("mlp", "embed"), rngs, bias=True)
        self.act = activation(cfg.activation_function)

    def __call__(self, x):
        return self.c_proj(self.act(self.c_fc(x)))


class GPT2Block(nnx.Module):
    def __init__(self, cfg: GPT2Config, rngs: nnx.Rngs):
        self.ln_1 = LayerNorm(cfg.hidden_size, cfg.layer_norm_epsilon)
        self.attn = GPT2Attention(cfg, rngs)
        self.ln_2 = LayerNorm(cfg.hidden_size, cfg.layer_norm_epsilon)
        self.mlp = GPT2MLP(cfg, rngs)

    def __call__(self, x, positions, index, cache=None, prefill=True):
        h, cache = self.attn(self.ln_1(x), positions, index, cache, prefill)
        x = x + h
        return x + self.mlp(self.ln_2(x)), cache


class GPT2LMHeadModel(CausalLM):
    embedding_attr = "wte"
    layers_attr = "h"
    learned_positions = True

    def __init__(self, cfg: GPT2Config, rngs: nnx.Rngs):
        self.cfg = cfg
        self.wte = normal_param(rngs, (cfg.vocab_size, cfg.hidden_size), ("vocab", "embed"), 0.02)
        self.wpe = normal_param(rngs, (cfg.max_position_embeddings, cfg.hidden_size), ("position", "embed"), 0.01)
        self.h = stack_layers(cfg.num_layers, lambda r: GPT2Block(cfg, r), rngs)
        self.ln_f = LayerNorm(cfg.hidden_size, cfg.layer_norm_epsilon)
        self.lm_head = None if cfg.tie_word_embeddings else normal_param(
            rngs, (cfg.hidden_size, cfg.vocab_size), ("embed", "vocab"), 0.02)

    def forward_cached(self, tokens, positions, cache=None, prefill=True):
        dtype = self.compute_dtype
        x = jnp.take(self.wte[...], tokens, axis=0).astype(dtype)
        x = x + jnp.take(self.wpe[...], positions, axis=0).astype(dtype)
        x, cache = self.run_layers(x, cache, positions, prefill=prefill, per_layer=(jnp.arange(self.cfg.num_layers),))
        return self.ln_f(x), cache


def hf_tensor_map(cfg: GPT2Config) -> dict[str, Tensor]:
    p = "transformer."
    out = {p + "wte.weight": Tensor(("wte",)), p + "wpe.weight": Tensor(("wpe",)),
           p + "ln_f.weight": Tensor(("ln_f", "weight")), p + "ln_f.bias": Tensor(("ln_f", "bias"))}
    if not cfg.tie_word_embeddings:
        out["lm_head.weight"] = Tensor(("lm_head",), TRANSPOSE)
    for i in range(cfg.num_layers):
        hp = f"{p}h.{i}."
        for norm in ("ln_1", "ln_2"):
            for leaf in ("weight", "bias"):
                out[f"{hp}{norm}.{leaf}"] = Tensor(("h", norm, leaf), layer=i)
        # Conv1D weights are [in, out] already.
        out[hp + "attn.c_attn.weight"] = Tensor(("h", "attn", "c_attn", "kernel"), SPLIT_LAST, i)
        out[hp + "attn.c_attn.bias"] = Tensor(("h", "attn", "c_attn", "bias"), SPLIT_LAST, i)
        for block, name in (("attn", "c_proj"), ("mlp", "c_fc"), ("mlp", "c_proj")):
            out[f"{hp}{block}.{name}.weight"] = Tensor(("h", block, name, "kernel"), layer=i)
            out[f"{hp}{block}.{name}.bias"] = Tensor(("h", block, name, "bias"), layer=i)
    return out


# The causal-mask buffers old GPT-2 checkpoints carry.
HF_IGNORED = (r"(^|\.)attn\.(masked_)?bias$",)
