"""What training and scoring cost, in the usual approximation: a forward
pass costs 2 FLOPs per parameter per token, a training step (forward and
backward) 6 (Kaplan et al. 2020). Parameters are those that multiply
activations: the token embedding table is a lookup and counts only when the
LM head reuses it (tied)."""
from __future__ import annotations

import jax
import numpy as np
from flax import nnx


def matmul_params(model: nnx.Module) -> int:
    total = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))
    if not model.cfg.tie_word_embeddings:
        total -= int(np.prod(getattr(model, model.embedding_attr).shape))
    return total


def forward_flops(model: nnx.Module, tokens: int) -> float:
    return 2.0 * matmul_params(model) * tokens


def train_flops(model: nnx.Module, tokens: int) -> float:
    return 6.0 * matmul_params(model) * tokens
