"""Pieces every decoder family shares: parameters with logical axis names,
projections, layer norm, attention with an optional KV cache, and the
`CausalLM` base class that fixes the interface loss.py, scoring, training and
generation rely on.

Interface of a model (a Flax NNX module):

- ``hidden_states(tokens[B, T]) -> [B, T, H]``: what the LM head multiplies
  (after the final norm and, for OPT-350M, ``project_out``); causal, so right
  padding is safe.
- ``head_weight() -> [H, V]``: the LM head as a matrix (no family here has an
  LM-head bias), so the loss never materializes full logits.
- ``__call__(tokens) -> logits [B, T, V]`` in fp32.
- ``init_cache(batch, length)`` and ``forward_cached(tokens, positions,
  cache, prefill)`` for KV-cached generation (lpjax/evaluation/generate.py);
  the cache is (keys, values), each [layers, B, S, kv_heads, head_dim].
- ``cfg``: the family's frozen config dataclass.

The decoder layers are one module whose parameters carry a leading
``layers`` axis (`stack_layers`), run by one ``jax.lax.scan``
(`CausalLM.run_layers`): XLA compiles one layer, not one per layer.

Logical axis names used by the parameters (lpjax/sharding.py maps them):
``layers``, ``vocab``, ``embed``, ``q_heads``, ``kv_heads``, ``mlp``, ``norm``,
``position`` (and ``None`` for an axis that stays replicated).
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# A layer's KV cache: (keys, values), each [B, S, kv_heads, head_dim]; slot s
# holds the token at position s of its row. A model's cache stacks them,
# each [layers, B, S, kv_heads, head_dim] (``init_cache``), and the layers'
# scan hands each layer its slice; after ``unstack_layers`` (the decode
# loop) it is a list of one LayerCache per layer.
LayerCache = tuple[jax.Array, jax.Array]
Cache = tuple[jax.Array, jax.Array] | list[tuple[jax.Array, jax.Array]]

ACTIVATIONS = {
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "relu": jax.nn.relu,
    # transformers' "gelu" is the exact erf form; the *_new/_fast/tanh names are the tanh approximation.
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_fast": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
}


def activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"unsupported activation {name!r}; known: {', '.join(sorted(ACTIVATIONS))}")
    return ACTIVATIONS[name]


@jax.custom_vjp
def project(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """x [..., in] @ kernel [in, out], with a hand-written backward pass.

    The math is autodiff's (d_x = d_y kernel^T, d_kernel = x^T d_y over all
    tokens); writing it out keeps XLA:CPU from fusing the transposes it
    wants for the weight gradient into the elementwise ops that produce
    d_y (strided loops). A SmolLM2 training step on an Intel Xeon took
    22-24 s with autodiff's backward and 15-19 s with this one
    (docs/design.md, The kernels)."""
    return x @ kernel


def _project_fwd(x, kernel):
    return x @ kernel, (x, kernel)


def _project_bwd(res, d_y):
    x, kernel = res
    d_kernel = jnp.einsum("ti,to->io", x.reshape(-1, x.shape[-1]), d_y.reshape(-1, d_y.shape[-1]))
    return (d_y @ kernel.T).astype(x.dtype), d_kernel.astype(kernel.dtype)


project.defvjp(_project_fwd, _project_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def gated_project(act, gate: jax.Array, up: jax.Array, kernel: jax.Array) -> jax.Array:
    """(act(gate) * up) @ kernel: SwiGLU and kin with their down projection,
    keeping only gate and up for the backward pass. Autodiff would also keep
    act(gate), its derivative's pieces and the product, [tokens,
    intermediate] each, in every layer until the backward; the product is
    recomputed instead (a SmolLM2 [8, 336] train step's temporaries: 3.50 ->
    3.03 GiB)."""
    return (act(gate) * up) @ kernel


def _gated_project_fwd(act, gate, up, kernel):
    return gated_project(act, gate, up, kernel), (gate, up, kernel)


def _gated_project_bwd(act, res, d_y):
    gate, up, kernel = res
    a, act_vjp = jax.vjp(act, gate)
    d_hidden, d_kernel = _project_bwd((a * up, kernel), d_y)
    return act_vjp(d_hidden * up)[0], d_hidden * a, d_kernel


gated_project.defvjp(_gated_project_fwd, _gated_project_bwd)


def normal_param(rngs: nnx.Rngs, shape: tuple[int, ...], axes: tuple[str | None, ...], std: float) -> nnx.Param:
    init = nnx.with_partitioning(jax.nn.initializers.normal(std), axes)
    return nnx.Param(init(rngs.params(), shape, jnp.float32))


def const_param(value: jax.Array, axes: tuple[str | None, ...]) -> nnx.Param:
    return nnx.Param(value.astype(jnp.float32), out_sharding=axes)


class Linear(nnx.Module):
    """A projection whose kernel is stored [in, out] (transformers stores
    nn.Linear as [out, in]), with an optional bias on the output axis."""

    def __init__(self, din: int, dout: int, axes: tuple[str | None, str | None], rngs: nnx.Rngs,
                 std: float = 0.02, bias: bool = False):
        self.kernel = normal_param(rngs, (din, dout), axes, std)
        self.bias = const_param(jnp.zeros((dout,)), (axes[1],)) if bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        return self._add_bias(project(x, self.kernel[...].astype(x.dtype)))

    def gated(self, act, gate: jax.Array, up: jax.Array) -> jax.Array:
        """self(act(gate) * up), the product not kept for the backward (`gated_project`)."""
        return self._add_bias(gated_project(act, gate, up, self.kernel[...].astype(gate.dtype)))

    def _add_bias(self, y: jax.Array) -> jax.Array:
        return y if self.bias is None else y + self.bias[...].astype(y.dtype)


class LayerNorm(nnx.Module):
    """keep_fp32: return fp32 whatever the input dtype (BERT, whose eps
    1e-12 means nothing in bf16)."""

    def __init__(self, dim: int, eps: float, affine: bool = True, keep_fp32: bool = False):
        self.weight = const_param(jnp.ones((dim,)), ("norm",)) if affine else None
        self.bias = const_param(jnp.zeros((dim,)), ("norm",)) if affine else None
        self.eps = eps
        self.keep_fp32 = keep_fp32

    def __call__(self, x: jax.Array) -> jax.Array:
        # Statistics in fp32 whatever the compute dtype.
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
        if self.weight is not None:
            y = y * self.weight[...] + self.bias[...]
        return y if self.keep_fp32 else y.astype(x.dtype)


def _scores(q: jax.Array, k: jax.Array, mask: jax.Array, scale: float) -> jax.Array:
    """q [B,T,KV,G,D], k [B,S,KV,D], mask [B,T,S] or [T,S] -> masked fp32 scores [B,KV,G,T,S]."""
    scores = jnp.einsum("btkgd,bskd->bkgts", q, k, preferred_element_type=jnp.float32) * scale
    if mask.ndim == 3:
        mask = mask[:, None, None, :, :]
    return jnp.where(mask, scores, jnp.finfo(jnp.float32).min)


def _attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, scale: float) -> jax.Array:
    """Softmax attention without the backward's residuals (scoring, decoding)."""
    probs = jax.nn.softmax(_scores(q, k, mask, scale), axis=-1).astype(v.dtype)
    return jnp.einsum("bkgts,bskd->btkgd", probs, v)


def _attention_fwd(q, k, v, mask, scale) -> tuple[jax.Array, jax.Array]:
    """The output and the log-sum-exp of every score row [B,KV,G,T,1], all the
    backward needs besides q, k and v."""
    scores = _scores(q, k, mask, scale)
    lse = jax.nn.logsumexp(scores, axis=-1, keepdims=True)
    return jnp.einsum("bkgts,bskd->btkgd", jnp.exp(scores - lse).astype(v.dtype), v), lse


def _attention_bwd(q, k, v, mask, out, lse, d_out, scale) -> tuple[jax.Array, jax.Array, jax.Array]:
    """d_q, d_k, d_v in fp32.

    FlashAttention's backward: the probabilities are recomputed from the
    saved log-sum-exp instead of kept from the forward pass. Autodiff would
    keep three [B, heads, T, T] tensors per layer until the backward (the
    scores, the probabilities and the broadcast mask: about 1.8 of the
    5.1 GiB of temporaries of a SmolLM2 step at 8 x 272 tokens); this
    keeps none."""
    probs = jnp.exp(_scores(q, k, mask, scale) - lse)
    d_out32 = d_out.astype(jnp.float32)
    d_v = jnp.einsum("bkgts,btkgd->bskd", probs.astype(v.dtype), d_out, preferred_element_type=jnp.float32)
    d_probs = jnp.einsum("btkgd,bskd->bkgts", d_out, v, preferred_element_type=jnp.float32)
    row = jnp.einsum("btkgd,btkgd->bkgt", d_out32, out.astype(jnp.float32))[..., None]
    d_scores = (probs * (d_probs - row) * scale).astype(q.dtype)
    d_q = jnp.einsum("bkgts,bskd->btkgd", d_scores, k, preferred_element_type=jnp.float32)
    d_k = jnp.einsum("bkgts,btkgd->bskd", d_scores, q, preferred_element_type=jnp.float32)
    return d_q, d_k, d_v


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _grouped_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, scale: float) -> jax.Array:
    return _attention(q, k, v, mask, scale)


def _grouped_attention_fwd(q, k, v, mask, scale):
    out, lse = _attention_fwd(q, k, v, mask, scale)
    return out, (q, k, v, mask, out, lse)


def _grouped_attention_bwd(scale, res, d_out):
    q, k, v, mask, out, lse = res
    d_q, d_k, d_v = _attention_bwd(q, k, v, mask, out, lse, d_out, scale)
    return (d_q.astype(q.dtype), d_k.astype(k.dtype), d_v.astype(v.dtype),
            np.zeros(mask.shape, jax.dtypes.float0))


_grouped_attention.defvjp(_grouped_attention_fwd, _grouped_attention_bwd)


def _attend(attention: Callable[..., jax.Array], q: jax.Array, k: jax.Array, v: jax.Array, *args) -> jax.Array:
    """q [B,T,H,D], k/v [B,S,KV,D] -> [B,T,H*D] through ``attention(q grouped
    [B,T,KV,G,D], k, v, *args)`` (`_grouped_attention`, `_causal_blocks`).

    GQA groups query heads over their shared key/value head instead of
    materializing repeated keys and values. Every row attends to at least
    itself, so no softmax row is empty."""
    b, t, h, d = q.shape
    kv = k.shape[2]
    return attention(q.reshape(b, t, kv, h // kv, d), k, v.astype(q.dtype), *args).reshape(b, t, h * d)


# Query rows per block of causal attention without a cache (training,
# scoring): a block attends only to the keys up to its last row, so the
# masked upper triangle is mostly never computed. At 336 tokens (SmolLM2,
# fp32, Intel Xeon, 2 cores) the attention's forward + backward over 30
# layers took 2.8 s instead of 3.8 s; at 512, 5.5 s instead of 8.4 s. Each
# block is more program to compile (a [8, 256] SmolLM2 train step: 2.9 s ->
# 4.3 s), so longer sequences take at most MAX_ATTENTION_BLOCKS longer blocks.
ATTENTION_BLOCK = 128
MAX_ATTENTION_BLOCKS = 4


def _blocks(t: int, window: int | None) -> list[tuple[int, int, jax.Array]]:
    """(first row, end row, causal mask [rows, end]) of each query block; a
    block's keys are those before its end."""
    size = max(ATTENTION_BLOCK, -(-t // MAX_ATTENTION_BLOCKS))
    out = []
    for start in range(0, t, size):
        end = min(start + size, t)
        # jnp, not numpy: XLA computes the mask from iotas instead of the
        # program carrying [rows, end] constants.
        delta = jnp.arange(start, end)[:, None] - jnp.arange(end)[None, :]
        mask = delta >= 0
        if window is not None:
            mask &= delta < window
        out.append((start, end, mask))
    return out


# One backward pass for all blocks, not one per block: the blocks' residuals
# are then q, k, v, the output and the log-sum-exp once, not each block's
# slices of them (a SmolLM2 [8, 336] train step: temporaries 3.98 -> 3.84
# GiB, AMD EPYC).
@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _causal_blocks(q: jax.Array, k: jax.Array, v: jax.Array, scale: float, window: int | None) -> jax.Array:
    """q [B,T,KV,G,D], k/v [B,T,KV,D] -> [B,T,KV,G,D], causal by index."""
    return jnp.concatenate([_attention(q[:, start:end], k[:, :end], v[:, :end], mask, scale)
                            for start, end, mask in _blocks(q.shape[1], window)], axis=1)


def _causal_blocks_fwd(q, k, v, scale, window):
    outs, lses = zip(*(_attention_fwd(q[:, start:end], k[:, :end], v[:, :end], mask, scale)
                       for start, end, mask in _blocks(q.shape[1], window)))
    out = jnp.concatenate(outs, axis=1)
    return out, (q, k, v, out, jnp.concatenate(lses, axis=3))


def _causal_blocks_bwd(scale, window, res, d_out):
    q, k, v, out, lse = res
    d_qs, d_k, d_v = [], jnp.zeros(k.shape, jnp.float32), jnp.zeros(v.shape, jnp.float32)
    for start, end, mask in _blocks(q.shape[1], window):
        d_q_block, d_k_block, d_v_block = _attention_bwd(
            q[:, start:end], k[:, :end], v[:, :end], mask, out[:, start:end], lse[:, :, :, start:end],
            d_out[:, start:end], scale)
        d_qs.append(d_q_block)
        d_k = d_k.at[:, :end].add(d_k_block)
        d_v = d_v.at[:, :end].add(d_v_block)
    return jnp.concatenate(d_qs, axis=1).astype(q.dtype), d_k.astype(k.dtype), d_v.astype(v.dtype)


_causal_blocks.defvjp(_causal_blocks_fwd, _causal_blocks_bwd)


def self_attention(q: jax.Array, k: jax.Array, v: jax.Array, positions: jax.Array, cache: LayerCache | None,
                   prefill: bool, scale: float, window: int | None = None) -> tuple[jax.Array, LayerCache | None]:
    """Causal self-attention over this call's tokens, or over the KV cache.

    Without a cache (training, scoring) or at prefill, the T tokens attend
    to each other causally by index: right padding never reaches a real
    token. With a cache, this call's keys/values are first written at the
    slots named by ``positions``; a decode step (prefill=False) then attends
    to every slot at or before its own position, so rows of a batch may sit
    at different positions.
    """
    b, t = positions.shape
    if cache is None and t > ATTENTION_BLOCK:
        return _attend(_causal_blocks, q, k, v, scale, window), None
    new_cache = None
    if cache is not None:
        rows = jnp.arange(b)[:, None]
        new_cache = tuple(c.at[rows, positions].set(x.astype(c.dtype)) for c, x in zip(cache, (k, v)))
    if cache is None or prefill:
        q_pos = k_pos = jnp.broadcast_to(jnp.arange(t), (b, t))
    else:
        k, v = new_cache
        q_pos, k_pos = positions, jnp.broadcast_to(jnp.arange(k.shape[1]), (b, k.shape[1]))
    delta = q_pos[:, :, None] - k_pos[:, None, :]
    mask = delta >= 0
    if window is not None:
        mask &= delta < window
    return _attend(_grouped_attention, q, k, v, mask, scale), new_cache


# "full": keep only each layer's input; "dots": also keep the matmul outputs
# without a batch dimension (the projections), recompute the rest.
REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def state_layers(state: nnx.State) -> int:
    """The length of the leading ``layers`` axis of a stacked layer's state."""
    return jax.tree.leaves(state)[0].shape[0]


def stack_layers(num_layers: int, make: Callable[[nnx.Rngs], nnx.Module], rngs: nnx.Rngs) -> nnx.Module:
    """One module holding ``num_layers`` independently initialized layers:
    every parameter gets a leading axis named ``layers``."""

    @nnx.split_rngs(splits=num_layers)
    @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
    def build(rngs: nnx.Rngs) -> nnx.Module:
        return make(rngs)

    return build(rngs)


class CausalLM(nnx.Module):
    """Base of the decoder families: subclasses set ``cfg`` (with
    num_layers, num_heads, dim_per_head, tie_word_embeddings, and
    num_kv_heads where it differs from num_heads) and implement
    ``forward_cached``."""

    cfg: Any
    embedding_attr = "embed_tokens"  # the [V, E] token table a tied head reuses
    layers_attr = "layers"  # the stacked decoder layers (stack_layers)
    learned_positions = False  # a position table caps the length
    # Activation checkpointing of each layer in training (REMAT_POLICIES).
    remat: str = "none"

    def run_layers(self, x: jax.Array, cache: Cache | None, *args, prefill: bool = True,
                   per_layer: tuple[jax.Array, ...] = ()) -> tuple[jax.Array, Cache | None]:
        """x through the stacked layers, one scan step per layer:
        layer i(x, *args, *(a[i] for a in per_layer), cache=(keys[i], values[i]),
        prefill=prefill); the new cache is stacked again.
        After ``unstack_layers`` the layers run one by one, and the cache is
        a list of one (keys, values) per layer.
        Each step is rematerialized in the backward pass as ``self.remat``
        says: memory for compute on long sequences."""
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"remat={self.remat!r}; choose one of {sorted(REMAT_POLICIES)}")
        layers = getattr(self, self.layers_attr)
        if isinstance(layers, nnx.List):  # unstack_layers(): one by one, a cache per layer
            out = []
            for i, layer in enumerate(layers):
                x, layer_cache = layer(x, *args, *(a[i] for a in per_layer),
                                       cache=None if cache is None else cache[i], prefill=prefill)
                out.append(layer_cache)
            return x, (None if cache is None else out)
        graphdef, state = nnx.split(layers)

        def step(x, xs):
            layer_state, extra, layer_cache = xs
            return nnx.merge(graphdef, layer_state)(x, *args, *extra, cache=layer_cache, prefill=prefill)

        if self.remat != "none":
            # prevent_cse=False: scan already keeps the recomputation apart.
            step = jax.checkpoint(step, policy=REMAT_POLICIES[self.remat], prevent_cse=False)
        # The cache goes in and out as the scan's per-layer slices, not in its
        # carry: written at a traced layer index inside the carry, it slowed
        # decoding 1.3-4x, and the shared-prefix paths were slower with it.
        return jax.lax.scan(step, x, (state, per_layer, cache))

    def unstack_layers(self) -> None:
        """Replace the stacked layers by a list of one module per layer (their
        slices, taken once), run unrolled with one cache per layer: what the
        decode loop wants, where a step then writes its slot in place (a scan
        carrying the stacked cache, or slices taken inside the loop, ran
        1.3x to 4x slower on XLA:CPU)."""
        graphdef, state = nnx.split(getattr(self, self.layers_attr))
        setattr(self, self.layers_attr, nnx.List(
            [nnx.merge(graphdef, jax.tree.map(lambda a: a[i], state)) for i in range(state_layers(state))]))

    @property
    def compute_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.cfg.compute_dtype)

    def forward_cached(self, tokens: jax.Array, positions: jax.Array, cache: Cache | None,
                       prefill: bool = True) -> tuple[jax.Array, Cache | None]:
        raise NotImplementedError

    def cache_shape(self) -> tuple[int, int, int]:
        """(num_layers, kv_heads, head_dim)."""
        c = self.cfg
        return c.num_layers, getattr(c, "num_kv_heads", c.num_heads), c.dim_per_head

    def head_weight(self) -> jax.Array:
        """The output projection as [H, V], for the chunked loss."""
        if self.cfg.tie_word_embeddings:
            return getattr(self, self.embedding_attr)[...].T
        return self.lm_head[...]

    def max_length(self) -> int | None:
        """The longest sequence the model can position: the learned position
        table's length, or None (rotary positions extrapolate)."""
        return self.cfg.max_position_embeddings if self.learned_positions else None

    def hidden_states(self, tokens: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """Hidden states [B, T, H] that the LM head multiplies, under a causal mask.

        Right padding needs no extra mask: with causal attention, pad tokens
        after a sequence never influence its positions."""
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
        return self.forward_cached(tokens, positions, None)[0]

    def init_cache(self, batch: int, length: int) -> Cache:
        layers, kv, d = self.cache_shape()
        zeros = jnp.zeros((layers, batch, length, kv, d), self.compute_dtype)
        return zeros, zeros

    def __call__(self, tokens: jax.Array) -> jax.Array:
        h = self.hidden_states(tokens).astype(jnp.float32)
        return h @ self.head_weight()
