"""A BERT encoder in Flax NNX, loaded from transformers' BERT checkpoints
through lpjax/models/hf.py like the decoder families.

This is the encoder behind sentence-transformers' all-MiniLM-L6-v2 (a 6-layer,
384-wide BERT), which embeds samples for clustering (docs/method.md, Clusters).
BERT is post-LayerNorm: every sublayer is `x = LayerNorm(x + sublayer(x))`,
and the embeddings (word + position + token type) are LayerNorm-ed too.
Dropout is absent: the encoder only runs in inference. It is an encoder, not
a causal LM, so the model registry refuses it as a probe or target.

Checkpoint names are BertForX's (`bert.` prefix); BertModel checkpoints,
which lack it, load too. The pooler and task heads (`cls.*`) are not loaded:
sentence embeddings pool the last hidden states instead.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from lpjax.models.common import LayerNorm, Linear, activation, normal_param
from lpjax.models.convert import TRANSPOSE, Tensor


@dataclasses.dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position_embeddings: int  # the longest input: learned positions
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    pad_token_id: int = 0
    # Parameters stay fp32; activations and matmuls run in this dtype
    # (LayerNorm, softmax and the outputs stay fp32).
    compute_dtype: str = "float32"
    # The config.json this came from (JSON text); not part of equality or hashing.
    hf_source: str | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def from_hf(cls, c: dict[str, Any], compute_dtype: str = "float32") -> "BertConfig":
        """From a transformers BertConfig dict (config.json)."""
        # RoBERTa & co. share the layout but offset their positions: refuse
        # them rather than embed with the wrong position rows.
        if c.get("model_type", "bert") != "bert":
            raise ValueError(f"model_type {c.get('model_type')!r} is not 'bert'")
        if c.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"position_embedding_type {c['position_embedding_type']!r}: only 'absolute' is supported")
        activation(c.get("hidden_act", "gelu"))
        if c["hidden_size"] % c["num_attention_heads"]:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        return cls(
            vocab_size=c["vocab_size"], hidden_size=c["hidden_size"], num_layers=c["num_hidden_layers"],
            num_heads=c["num_attention_heads"], intermediate_size=c["intermediate_size"],
            max_position_embeddings=c.get("max_position_embeddings", 512), type_vocab_size=c.get("type_vocab_size", 2),
            layer_norm_eps=c.get("layer_norm_eps", 1e-12), hidden_act=c.get("hidden_act", "gelu"),
            pad_token_id=c.get("pad_token_id", 0) or 0, compute_dtype=compute_dtype,
        )


class Embeddings(nnx.Module):
    def __init__(self, cfg: BertConfig, rngs: nnx.Rngs):
        self.word = normal_param(rngs, (cfg.vocab_size, cfg.hidden_size), ("vocab", "embed"), 0.02)
        self.position = normal_param(rngs, (cfg.max_position_embeddings, cfg.hidden_size), ("position", "embed"), 0.02)
        self.token_type = normal_param(rngs, (cfg.type_vocab_size, cfg.hidden_size), (None, "embed"), 0.02)
        self.norm = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps, keep_fp32=True)

    def __call__(self, tokens: jax.Array, token_types: jax.Array) -> jax.Array:
        t = tokens.shape[1]
        x = jnp.take(self.word[...], tokens, axis=0)
        x = x + self.position[...][None, :t]
        x = x + jnp.take(self.token_type[...], token_types, axis=0)
        return self.norm(x)


class SelfAttention(nnx.Module):
    def __init__(self, cfg: BertConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        h = cfg.hidden_size
        self.query = Linear(h, h, ("embed", "q_heads"), rngs, bias=True)
        self.key = Linear(h, h, ("embed", "kv_heads"), rngs, bias=True)
        self.value = Linear(h, h, ("embed", "kv_heads"), rngs, bias=True)
        self.out = Linear(h, h, ("q_heads", "embed"), rngs, bias=True)

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        # x: [B, T, H]; mask: [B, T] bool, True for real tokens (keys).
        cfg = self.cfg
        b, t, _ = x.shape
        # Heads-major [B, heads, T, D] layout: XLA's CPU batched matmul runs
        # about twice as fast on it as on the [B, T, heads, D] einsum of
        # common.self_attention.
        split = lambda y: y.reshape(b, t, cfg.num_heads, cfg.head_dim).transpose(0, 2, 1, 3)
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = jnp.einsum("bhtd,bhsd->bhts", q, k, preferred_element_type=jnp.float32)
        scores = scores / jnp.sqrt(jnp.float32(cfg.head_dim))
        # Padding keys get the most negative float, as transformers' BERT does,
        # so they take exactly zero weight (an all-pad row stays finite).
        scores = jnp.where(mask[:, None, None, :], scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(x.dtype)
        ctx = jnp.einsum("bhts,bhsd->bhtd", probs, v).transpose(0, 2, 1, 3).reshape(b, t, cfg.hidden_size)
        return self.out(ctx)


class EncoderLayer(nnx.Module):
    def __init__(self, cfg: BertConfig, rngs: nnx.Rngs):
        h, eps = cfg.hidden_size, cfg.layer_norm_eps
        self.attention = SelfAttention(cfg, rngs)
        self.attention_norm = LayerNorm(h, eps, keep_fp32=True)
        self.mlp_in = Linear(h, cfg.intermediate_size, ("embed", "mlp"), rngs, bias=True)
        self.mlp_out = Linear(cfg.intermediate_size, h, ("mlp", "embed"), rngs, bias=True)
        self.mlp_norm = LayerNorm(h, eps, keep_fp32=True)
        self.act = activation(cfg.hidden_act)

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        # Post-LN: the residual stream is normalized after each sublayer (fp32),
        # then cast back to the compute dtype.
        dtype = x.dtype
        x = self.attention_norm(x + self.attention(x, mask)).astype(dtype)
        return self.mlp_norm(x + self.mlp_out(self.act(self.mlp_in(x)))).astype(dtype)


class BertEncoder(nnx.Module):
    """Last hidden states [B, T, H] (fp32) of a BERT encoder, without the pooler."""

    def __init__(self, cfg: BertConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embeddings = Embeddings(cfg, rngs)
        self.layers = nnx.List([EncoderLayer(cfg, rngs) for _ in range(cfg.num_layers)])

    def __call__(self, tokens: jax.Array, mask: jax.Array, token_types: jax.Array | None = None) -> jax.Array:
        """tokens, token_types: int [B, T]; mask: [B, T], nonzero/True for real tokens.

        Positions are 0..T-1 on every row, so padding goes on the right.
        """
        if tokens.shape[1] > self.cfg.max_position_embeddings:
            raise ValueError(f"sequence length {tokens.shape[1]} > max_position_embeddings "
                             f"{self.cfg.max_position_embeddings}")
        if token_types is None:
            token_types = jnp.zeros_like(tokens)
        x = self.embeddings(tokens, token_types).astype(jnp.dtype(self.cfg.compute_dtype))
        mask = mask.astype(bool)
        for layer in self.layers:
            x = layer(x, mask)
        return x.astype(jnp.float32)


def hf_tensor_map(cfg: BertConfig) -> dict[str, Tensor]:
    """transformers tensor name -> where it lives in BertEncoder."""
    p = "bert."
    out = {p + "embeddings.word_embeddings.weight": Tensor(("embeddings", "word")),
           p + "embeddings.position_embeddings.weight": Tensor(("embeddings", "position")),
           p + "embeddings.token_type_embeddings.weight": Tensor(("embeddings", "token_type")),
           p + "embeddings.LayerNorm.weight": Tensor(("embeddings", "norm", "weight")),
           p + "embeddings.LayerNorm.bias": Tensor(("embeddings", "norm", "bias"))}
    linears = {("attention", "query"): "attention.self.query", ("attention", "key"): "attention.self.key",
               ("attention", "value"): "attention.self.value", ("attention", "out"): "attention.output.dense",
               ("mlp_in",): "intermediate.dense", ("mlp_out",): "output.dense"}
    norms = {"attention_norm": "attention.output.LayerNorm", "mlp_norm": "output.LayerNorm"}
    for i in range(cfg.num_layers):
        lp = f"{p}encoder.layer.{i}."
        for ours, hf in linears.items():
            out[f"{lp}{hf}.weight"] = Tensor(("layers", i, *ours, "kernel"), TRANSPOSE)
            out[f"{lp}{hf}.bias"] = Tensor(("layers", i, *ours, "bias"))
        for ours, hf in norms.items():
            out[f"{lp}{hf}.weight"] = Tensor(("layers", i, ours, "weight"))
            out[f"{lp}{hf}.bias"] = Tensor(("layers", i, ours, "bias"))
    return out


# The pooler and task heads (sentence embeddings pool the hidden states
# themselves) and the position_ids buffer.
HF_IGNORED = (r"^bert\.pooler\.", r"^cls\.", r"(^|\.)position_ids$")
