"""Meta's OPT decoder in Flax NNX, named after transformers' OPTForCausalLM.

OPT quirks that matter for parity:

- learned positions with an offset of 2 (rows 0 and 1 of the table are never
  used by a right-padded sequence: position t reads row t + 2);
- biases on every projection (``enable_bias``), ReLU, layer norms with bias;
- ``do_layer_norm_before=False`` (OPT-350M) is post-LN: each sublayer's norm
  comes after its residual add, and there is no final layer norm;
- ``word_embed_proj_dim != hidden_size`` (OPT-350M: 512 vs 1024): token
  embeddings are ``project_in``-ed to the model width and the last hidden
  state is ``project_out``-ed back before the (tied) LM head. So
  ``hidden_states`` returns the projected states, which is what the head
  multiplies.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
from flax import nnx

from lpjax.models.common import CausalLM, LayerNorm, Linear, activation, normal_param, self_attention, stack_layers
from lpjax.models.convert import TRANSPOSE, Tensor

POSITION_OFFSET = 2  # transformers' OPTLearnedPositionalEmbedding.offset


@dataclasses.dataclass(frozen=True)
class OPTConfig:
    vocab_size: int
    hidden_size: int = 64
    ffn_dim: int = 256
    num_layers: int = 2
    num_heads: int = 4
    max_position_embeddings: int = 2048
    word_embed_proj_dim: int | None = None
    do_layer_norm_before: bool = True
    remove_final_layer_norm: bool = False
    enable_bias: bool = True
    layer_norm_elementwise_affine: bool = True
    activation_function: str = "relu"
    tie_word_embeddings: bool = True
    layer_norm_eps: float = 1e-5  # torch.nn.LayerNorm's default; OPT has no config field for it
    compute_dtype: str = "float32"
    # The config.json this came from (JSON text), so save_hf can write it back;
    # not part of equality or hashing.
    hf_source: str | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def embed_dim(self) -> int:
        return self.word_embed_proj_dim or self.hidden_size

    @property
    def dim_per_head(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def has_final_layer_norm(self) -> bool:
        return self.do_layer_norm_before and not self.remove_final_layer_norm

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "hf_source"}

    @classmethod
    def from_hf(cls, c: dict[str, Any], compute_dtype: str = "float32") -> "OPTConfig":
        activation(c.get("activation_function", "relu"))
        return cls(
            vocab_size=c["vocab_size"], hidden_size=c["hidden_size"], ffn_dim=c["ffn_dim"],
            num_layers=c["num_hidden_layers"], num_heads=c["num_attention_heads"],
            max_position_embeddings=c.get("max_position_embeddings", 2048),
            word_embed_proj_dim=c.get("word_embed_proj_dim") or c["hidden_size"],
            do_layer_norm_before=c.get("do_layer_norm_before", True),
            remove_final_layer_norm=c.get("_remove_final_layer_norm", False),
            enable_bias=c.get("enable_bias", True),
            layer_norm_elementwise_affine=c.get("layer_norm_elementwise_affine", True),
            activation_function=c.get("activation_function", "relu"),
            tie_word_embeddings=c.get("tie_word_embeddings", True), compute_dtype=compute_dtype,
        )

    def to_hf(self) -> dict[str, Any]:
        return {
            "architectures": ["OPTForCausalLM"], "model_type": "opt", "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size, "ffn_dim": self.ffn_dim, "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads, "max_position_embeddings": self.max_position_embeddings,
            "word_embed_proj_dim": self.embed_dim, "do_layer_norm_before": self.do_layer_norm_before,
            "_remove_final_layer_norm": self.remove_final_layer_norm, "enable_bias": self.enable_bias,
            "layer_norm_elementwise_affine": self.layer_norm_elementwise_affine,
            "activation_function": self.activation_function, "tie_word_embeddings": self.tie_word_embeddings,
        }


class OPTAttention(nnx.Module):
    def __init__(self, cfg: OPTConfig, rngs: nnx.Rngs):
        h, bias = cfg.hidden_size, cfg.enable_bias
        self.cfg = cfg
        self.q_proj = Linear(h, h, ("embed", "q_heads"), rngs, bias=bias)
        self.k_proj = Linear(h, h, ("embed", "kv_heads"), rngs, bias=bias)
        self.v_proj = Linear(h, h, ("embed", "kv_heads"), rngs, bias=bias)
        self.out_proj = Linear(h, h, ("q_heads", "embed"), rngs, bias=bias)

    def __call__(self, x, positions, cache=None, prefill=True):
        b, t, _ = x.shape
        n, d = self.cfg.num_heads, self.cfg.dim_per_head
        q, k, v = (p(x).reshape(b, t, n, d) for p in (self.q_proj, self.k_proj, self.v_proj))
        out, cache = self_attention(q, k, v, positions, cache, prefill, d**-0.5)
        return self.out_proj(out), cache


class OPTDecoderLayer(nnx.Module):
    def __init__(self, cfg: OPTConfig, rngs: nnx.Rngs):
        eps, affine, bias = cfg.layer_norm_eps, cfg.layer_norm_elementwise_affine, cfg.enable_bias
        self.pre_ln = cfg.do_layer_norm_before
        self.self_attn = OPTAttention(cfg, rngs)
        self.self_attn_layer_norm = LayerNorm(cfg.hidden_size, eps, affine)
        self.fc1 = Linear(cfg.hidden_size, cfg.ffn_dim, ("embed", "mlp"), rngs, bias=bias)
        self.fc2 = Linear(cfg.ffn_dim, cfg.hidden_size, ("mlp", "embed"), rngs, bias=bias)
        self.final_layer_norm = LayerNorm(cfg.hidden_size, eps, affine)
        self.act = activation(cfg.activation_function)

    def __call__(self, x, positions, cache=None, prefill=True):
        h = self.self_attn_layer_norm(x) if self.pre_ln else x
        h, cache = self.self_attn(h, positions, cache, prefill)
        x = x + h
        if not self.pre_ln:
            x = self.self_attn_layer_norm(x)
        h = self.final_layer_norm(x) if self.pre_ln else x
        x = x + self.fc2(self.act(self.fc1(h)))
        if not self.pre_ln:
            x = self.final_layer_norm(x)
        return x, cache


class OPTForCausalLM(CausalLM):
    learned_positions = True

    def __init__(self, cfg: OPTConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        h, e = cfg.hidden_size, cfg.embed_dim
        self.embed_tokens = normal_param(rngs, (cfg.vocab_size, e), ("vocab", "embed"), 0.02)
        self.embed_positions = normal_param(rngs, (cfg.max_position_embeddings + POSITION_OFFSET, h),
                                            ("position", "embed"), 0.02)
        # The projections' second width gets no logical name: one tensor may
        # not map two axes to the same mesh axis.
        self.project_in = Linear(e, h, (None, "embed"), rngs) if e != h else None
        self.project_out = Linear(h, e, ("embed", None), rngs) if e != h else None
        self.layers = stack_layers(cfg.num_layers, lambda r: OPTDecoderLayer(cfg, r), rngs)
        self.final_layer_norm = (LayerNorm(h, cfg.layer_norm_eps, cfg.layer_norm_elementwise_affine)
                                 if cfg.has_final_layer_norm else None)
        self.lm_head = None if cfg.tie_word_embeddings else normal_param(rngs, (e, cfg.vocab_size), ("embed", "vocab"), 0.02)

    def forward_cached(self, tokens, positions, cache=None, prefill=True):
        dtype = self.compute_dtype
        x = jnp.take(self.embed_tokens[...], tokens, axis=0).astype(dtype)
        if self.project_in is not None:
            x = self.project_in(x)
        # With right padding (or a per-row cursor), transformers' positions
        # cumsum(attention_mask) - 1 are just the token indices.
        x = x + jnp.take(self.embed_positions[...], positions + POSITION_OFFSET, axis=0).astype(dtype)
        x, cache = self.run_layers(x, cache, positions, prefill=prefill)
        if self.final_layer_norm is not None:
            x = self.final_layer_norm(x)
        if self.project_out is not None:
            x = self.project_out(x)
        return x, cache


def hf_tensor_map(cfg: OPTConfig) -> dict[str, Tensor]:
    p = "model.decoder."
    out = {p + "embed_tokens.weight": Tensor(("embed_tokens",)),
           p + "embed_positions.weight": Tensor(("embed_positions",))}
    if cfg.embed_dim != cfg.hidden_size:
        out[p + "project_in.weight"] = Tensor(("project_in", "kernel"), TRANSPOSE)
        out[p + "project_out.weight"] = Tensor(("project_out", "kernel"), TRANSPOSE)
    norms = ["self_attn_layer_norm", "final_layer_norm"] if cfg.layer_norm_elementwise_affine else []
    if cfg.has_final_layer_norm and cfg.layer_norm_elementwise_affine:
        out[p + "final_layer_norm.weight"] = Tensor(("final_layer_norm", "weight"))
        out[p + "final_layer_norm.bias"] = Tensor(("final_layer_norm", "bias"))
    if not cfg.tie_word_embeddings:
        out["lm_head.weight"] = Tensor(("lm_head",), TRANSPOSE)
    for i in range(cfg.num_layers):
        lp = f"{p}layers.{i}."
        linears = [("self_attn", n) for n in ("q_proj", "k_proj", "v_proj", "out_proj")] + [(None, "fc1"), (None, "fc2")]
        for block, name in linears:
            path = ("layers",) + ((block,) if block else ()) + (name,)
            hf = lp + (f"{block}." if block else "") + name
            out[hf + ".weight"] = Tensor(path + ("kernel",), TRANSPOSE, i)
            if cfg.enable_bias:
                out[hf + ".bias"] = Tensor(path + ("bias",), layer=i)
        for norm in norms:
            out[f"{lp}{norm}.weight"] = Tensor(("layers", norm, "weight"), layer=i)
            out[f"{lp}{norm}.bias"] = Tensor(("layers", norm, "bias"), layer=i)
    return out


HF_IGNORED: tuple[str, ...] = ()
