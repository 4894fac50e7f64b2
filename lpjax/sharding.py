"""Meshes and the one table that maps logical axis names to mesh axes.

Every parameter names its axes (lpjax/models/*.py); batches are
[batch, length]. This module turns those names into NamedShardings on a mesh
with axes (data, fsdp, tensor): data and fsdp split the batch, fsdp also
splits parameters and optimizer state (ZeRO-3 style), tensor splits heads,
MLP width and vocabulary (Megatron style).
"""
from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Any

import jax
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

# logical axis -> mesh axis (or None = replicated). Unknown names fail loudly.
RULES: dict[str, str | tuple[str, ...] | None] = {
    "batch": ("data", "fsdp"),
    "length": None,
    "embed": "fsdp",
    "vocab": "tensor",
    "q_heads": "tensor",
    "kv_heads": "tensor",
    "mlp": "tensor",
    "norm": None,
    "position": None,
    # The stacked decoder layers' leading axis: the layer scan slices it, so
    # each device holds every layer (of its share of the other axes).
    "layers": None,
}


def mesh_shape(shape: Sequence[int], num_devices: int) -> tuple[int, ...]:
    """Resolve one -1 entry to 'the rest of the devices'."""
    shape = list(shape)
    if len(shape) != len(MESH_AXES):
        raise ValueError(f"mesh shape {shape} must have {len(MESH_AXES)} entries {MESH_AXES}")
    if shape.count(-1) > 1:
        raise ValueError(f"mesh shape {shape}: at most one -1")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if num_devices % known:
            raise ValueError(f"mesh shape {shape} does not divide {num_devices} devices")
        shape[shape.index(-1)] = num_devices // known
    if math.prod(shape) != num_devices:
        raise ValueError(f"mesh shape {shape} uses {math.prod(shape)} devices, but {num_devices} are available")
    return tuple(shape)


def make_mesh(shape: Sequence[int] = (-1, 1, 1), devices: Sequence[Any] | None = None) -> Mesh:
    devices = list(devices) if devices is not None else jax.devices()
    resolved = mesh_shape(shape, len(devices))
    return jax.make_mesh(resolved, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices)


def logical_to_spec(names: Sequence[str | None], shape: Sequence[int], mesh: Mesh) -> P:
    """PartitionSpec for an array with these logical axis names. A dimension
    the mesh axis does not divide stays replicated (with a log line)."""
    spec = []
    for name, dim in zip(names, shape):
        if name is None:
            spec.append(None)
            continue
        if name not in RULES:
            raise KeyError(f"logical axis {name!r} has no sharding rule; known: {sorted(RULES)}")
        axes = RULES[name]
        size = math.prod(mesh.shape[a] for a in ((axes,) if isinstance(axes, str) else axes or ()))
        if axes is not None and dim % size:
            logging.log_first_n(logging.WARNING, "axis %s (size %d) not divisible by mesh %s; replicated", 10,
                                name, dim, axes)
            axes = None
        spec.append(axes)
    return P(*spec)


def param_shardings(state: Any, mesh: Mesh) -> Any:
    """NamedShardings for an nnx.State of parameters (arrays, or shapes
    alone: an abstract model's, to restore into), from their logical names."""

    def one(v):
        names = v.get_metadata().get("out_sharding")
        shape = np.shape(v.get_value())
        if names is None:
            if len(shape) == 0:
                return NamedSharding(mesh, P())
            raise ValueError(f"parameter of shape {shape} has no logical axis names")
        return NamedSharding(mesh, logical_to_spec(names, shape, mesh))

    shardings = jax.tree_util.tree_map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))
    return shardings


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Rows split over the batch axes; any further dimensions whole."""
    return NamedSharding(mesh, P(RULES["batch"]))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def shard_params(state: Any, mesh: Mesh) -> Any:
    return jax.device_put(state, param_shardings(state, mesh))


def local_rows(mesh: Mesh, batch_size: int) -> slice:
    """The contiguous block of a global batch's rows that this process feeds."""
    index_map = batch_sharding(mesh).addressable_devices_indices_map((batch_size, 1))
    starts = [idx[0].start or 0 for idx in index_map.values()]
    stops = [batch_size if idx[0].stop is None else idx[0].stop for idx in index_map.values()]
    block = slice(min(starts), max(stops))
    if sum(stop - start for start, stop in set(zip(starts, stops))) != block.stop - block.start:
        raise ValueError(f"this process's batch rows are not contiguous on mesh {dict(mesh.shape)}")
    return block


def data_parallel_size(mesh: Mesh) -> int:
    """How many ways a batch's rows are split."""
    axes = RULES["batch"]
    return math.prod(mesh.shape[a] for a in ((axes,) if isinstance(axes, str) else axes))


def batch_shardings(mesh: Mesh, keys: Collection[str], row_keys: Collection[str]) -> dict[str, NamedSharding]:
    """Shardings of a batch dict: the keys whose leading axis is the batch
    row are split over the batch axes, the rest (tables every row shares)
    replicated."""
    return {k: batch_sharding(mesh) if k in row_keys else replicated(mesh) for k in keys}


def put_batch(batch: dict[str, Any], mesh: Mesh, batch_size: int, row_keys: Collection[str]) -> dict[str, Any]:
    """Place this process's rows of a global [batch_size, ...] batch on the
    mesh: ``row_keys`` split over (data, fsdp), other numpy arrays (tables
    every process holds whole) replicated; values already on devices
    (precomputed prefix keys/values) pass through."""
    rows, rep = batch_sharding(mesh), replicated(mesh)
    out = {}
    for k, v in batch.items():
        if k in row_keys:
            out[k] = jax.make_array_from_process_local_data(rows, v, (batch_size,) + v.shape[1:])
        elif isinstance(v, np.ndarray):
            out[k] = jax.make_array_from_process_local_data(rep, v, v.shape)
        else:
            out[k] = v
    return out
