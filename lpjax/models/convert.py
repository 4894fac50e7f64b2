"""How one transformers tensor maps onto one lpjax parameter.

Each family's `hf_tensor_map(cfg)` returns {transformers name: Tensor}; the
Tensor names the parameter's path in the NNX state (and, for a decoder
layer's tensor, its slice of the stacked parameter's leading layer axis) and the layout change
between the two (a transpose for nn.Linear's [out, in], a reshape for
GPT-2's fused qkv, nothing for embeddings and norms). lpjax/models/hf.py
streams checkpoints through these maps in both directions.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Transform:
    name: str
    to_lpjax: Callable[[np.ndarray, tuple[int, ...]], np.ndarray]  # (hf array, lpjax shape) -> lpjax array
    to_hf: Callable[[np.ndarray], np.ndarray]
    hf_shape: Callable[[tuple[int, ...]], tuple[int, ...]]  # lpjax shape -> the shape transformers stores


IDENTITY = Transform("identity", lambda a, shape: a, lambda a: a, lambda s: tuple(s))
# nn.Linear stores [out, in]; lpjax kernels are [in, out].
TRANSPOSE = Transform("transpose", lambda a, shape: a.T, lambda a: a.T, lambda s: tuple(reversed(s)))
# [..., n * d] in transformers <-> [..., n, d] here (GPT-2's fused q|k|v).
SPLIT_LAST = Transform(
    "split_last",
    lambda a, shape: a.reshape(shape),
    lambda a: a.reshape(*a.shape[:-2], a.shape[-2] * a.shape[-1]),
    lambda s: (*s[:-2], s[-2] * s[-1]),
)


@dataclasses.dataclass(frozen=True)
class Tensor:
    path: tuple[str | int, ...]
    transform: Transform = IDENTITY
    layer: int | None = None  # checkpoint tensor = parameter[layer] (stacked layers)

    def shape(self, param_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The lpjax shape of this tensor's part of a parameter."""
        return tuple(param_shape if self.layer is None else param_shape[1:])

    def part(self, value):
        """This tensor's part of a parameter's value (lpjax layout)."""
        return value if self.layer is None else value[self.layer]
