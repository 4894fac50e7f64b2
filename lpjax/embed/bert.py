"""A BERT encoder in Flax NNX, loaded from a transformers `BertModel` safetensors file.

This is the encoder behind sentence-transformers' all-MiniLM-L6-v2 (a 6-layer,
384-wide BERT), which embeds samples for clustering (DESIGN §1 Clusters).
BERT is post-LayerNorm: every sublayer is `x = LayerNorm(x + sublayer(x))`,
and the embeddings (word + position + token type) are LayerNorm-ed too.
Dropout is absent: the encoder only runs in inference.

Parameter names are ours; `hf_names` maps each to its transformers key (a
rename, plus a transpose for dense kernels, stored [in, out] here as in
lpjax.models.llama). The pooler (`pooler.dense`) is not loaded: sentence
embeddings pool the last hidden states instead.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lpjax.models.common import LayerNorm

# transformers' ACT2FN names we support. BERT's "gelu" is the exact erf form.
_ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
}


@dataclasses.dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    hidden_size: int = 384
    num_layers: int = 6
    num_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    pad_token_id: int = 0
    # Parameters stay fp32; activations and matmuls run in this dtype
    # (LayerNorm, softmax and the outputs stay fp32).
    compute_dtype: str = "float32"

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def from_hf(cls, hf: dict[str, Any], **overrides: Any) -> "BertConfig":
        """From a transformers BertConfig dict (config.json)."""
        if hf.get("model_type", "bert") != "bert":
            raise ValueError(f"model_type {hf.get('model_type')!r} is not 'bert'")
        if hf.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"position_embedding_type {hf['position_embedding_type']!r}: only 'absolute' is supported")
        if hf.get("hidden_act", "gelu") not in _ACTIVATIONS:
            raise ValueError(f"hidden_act {hf['hidden_act']!r}: supported {sorted(_ACTIVATIONS)}")
        if hf["hidden_size"] % hf["num_attention_heads"]:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        kw = dict(
            vocab_size=hf["vocab_size"],
            hidden_size=hf["hidden_size"],
            num_layers=hf["num_hidden_layers"],
            num_heads=hf["num_attention_heads"],
            intermediate_size=hf["intermediate_size"],
            max_position_embeddings=hf.get("max_position_embeddings", 512),
            type_vocab_size=hf.get("type_vocab_size", 2),
            layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
            hidden_act=hf.get("hidden_act", "gelu"),
            pad_token_id=hf.get("pad_token_id", 0) or 0,
        )
        kw.update(overrides)
        return cls(**kw)


def _param(rngs: nnx.Rngs, shape: tuple[int, ...], axes: tuple[str | None, ...], std: float = 0.02) -> nnx.Param:
    init = nnx.with_partitioning(jax.nn.initializers.normal(std), axes)
    return nnx.Param(init(rngs.params(), shape, jnp.float32))


class Dense(nnx.Module):
    """y = x @ kernel + bias, kernel stored [in, out]."""

    def __init__(self, din: int, dout: int, axes: tuple[str, str], rngs: nnx.Rngs):
        self.kernel = _param(rngs, (din, dout), axes)
        self.bias = nnx.Param(jnp.zeros((dout,), jnp.float32), out_sharding=(axes[1],))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.kernel[...].astype(x.dtype) + self.bias[...].astype(x.dtype)


class Embeddings(nnx.Module):
    def __init__(self, cfg: BertConfig, rngs: nnx.Rngs):
        self.word = _param(rngs, (cfg.vocab_size, cfg.hidden_size), ("vocab", "embed"))
        self.position = _param(rngs, (cfg.max_position_embeddings, cfg.hidden_size), ("position", "embed"))
        self.token_type = _param(rngs, (cfg.type_vocab_size, cfg.hidden_size), (None, "embed"))
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
        self.query = Dense(h, h, ("embed", "q_heads"), rngs)
        self.key = Dense(h, h, ("embed", "kv_heads"), rngs)
        self.value = Dense(h, h, ("embed", "kv_heads"), rngs)
        self.out = Dense(h, h, ("q_heads", "embed"), rngs)

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        # x: [B, T, H]; mask: [B, T] bool, True for real tokens (keys).
        cfg = self.cfg
        b, t, _ = x.shape
        # Heads-major [B, heads, T, D] layout: XLA's CPU batched matmul runs
        # about twice as fast on it as on the [B, T, heads, D] einsum.
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
        self.cfg = cfg
        self.attention = SelfAttention(cfg, rngs)
        self.attention_norm = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps, keep_fp32=True)
        self.mlp_in = Dense(cfg.hidden_size, cfg.intermediate_size, ("embed", "mlp"), rngs)
        self.mlp_out = Dense(cfg.intermediate_size, cfg.hidden_size, ("mlp", "embed"), rngs)
        self.mlp_norm = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps, keep_fp32=True)

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        # Post-LN: the residual stream is normalized after each sublayer (fp32),
        # then cast back to the compute dtype.
        dtype = x.dtype
        x = self.attention_norm(x + self.attention(x, mask)).astype(dtype)
        act = _ACTIVATIONS[self.cfg.hidden_act]
        return self.mlp_norm(x + self.mlp_out(act(self.mlp_in(x)))).astype(dtype)


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


# ---------------------------------------------------------------- loading


def hf_names(cfg: BertConfig) -> dict[tuple, tuple[str, bool]]:
    """Our parameter path -> (transformers BertModel key, transpose?)."""
    names: dict[tuple, tuple[str, bool]] = {
        ("embeddings", "word"): ("embeddings.word_embeddings.weight", False),
        ("embeddings", "position"): ("embeddings.position_embeddings.weight", False),
        ("embeddings", "token_type"): ("embeddings.token_type_embeddings.weight", False),
        ("embeddings", "norm", "weight"): ("embeddings.LayerNorm.weight", False),
        ("embeddings", "norm", "bias"): ("embeddings.LayerNorm.bias", False),
    }
    ours_to_hf = {
        ("attention", "query"): "attention.self.query",
        ("attention", "key"): "attention.self.key",
        ("attention", "value"): "attention.self.value",
        ("attention", "out"): "attention.output.dense",
        ("mlp_in",): "intermediate.dense",
        ("mlp_out",): "output.dense",
    }
    norms = {("attention_norm",): "attention.output.LayerNorm", ("mlp_norm",): "output.LayerNorm"}
    for i in range(cfg.num_layers):
        for ours, hf in ours_to_hf.items():
            names[("layers", i, *ours, "kernel")] = (f"encoder.layer.{i}.{hf}.weight", True)
            names[("layers", i, *ours, "bias")] = (f"encoder.layer.{i}.{hf}.bias", False)
        for ours, hf in norms.items():
            names[("layers", i, *ours, "weight")] = (f"encoder.layer.{i}.{hf}.weight", False)
            names[("layers", i, *ours, "bias")] = (f"encoder.layer.{i}.{hf}.bias", False)
    return names


def _hf_tensors(path: str) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    tensors = load_file(path)
    # BertForX checkpoints prefix the encoder with "bert."; a BertModel does not.
    if not any(k.startswith("embeddings.") for k in tensors):
        tensors = {k[len("bert."):]: v for k, v in tensors.items() if k.startswith("bert.")}
    # Old TF-converted checkpoints name LayerNorm parameters gamma/beta.
    return {k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias"): v
            for k, v in tensors.items()}


def load_bert(model_dir: str, compute_dtype: str = "float32") -> BertEncoder:
    """A BertEncoder with the weights of `model_dir` (config.json + model.safetensors)."""
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = BertConfig.from_hf(json.load(f), compute_dtype=compute_dtype)
    weights = os.path.join(model_dir, "model.safetensors")
    if not os.path.exists(weights):
        raise FileNotFoundError(f"{weights} not found (only safetensors weights are supported)")
    tensors = _hf_tensors(weights)

    # Build the structure without spending time on random initialization.
    with nnx.use_eager_sharding(False):
        abstract = nnx.eval_shape(lambda: BertEncoder(cfg, nnx.Rngs(params=0)))
    graphdef, state = nnx.split(abstract)
    flat = dict(nnx.to_flat_state(state))
    names = hf_names(cfg)
    if set(flat) != set(names):
        raise AssertionError(f"parameter table out of sync: {sorted(set(flat) ^ set(names))}")
    missing = [hf for hf, _ in names.values() if hf not in tensors]
    if missing:
        raise KeyError(f"{weights} lacks {len(missing)} BERT tensors, e.g. {missing[:3]}")
    for path, (hf, transpose) in names.items():
        value = tensors[hf].T if transpose else tensors[hf]
        var = flat[path]
        if value.shape != var.shape:
            raise ValueError(f"{hf}: shape {value.shape} in the checkpoint, {var.shape} expected")
        var.set_value(jnp.asarray(value, jnp.float32))
    return nnx.merge(graphdef, state)
