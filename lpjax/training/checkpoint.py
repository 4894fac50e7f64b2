"""Orbax checkpoints of (params, optimizer state) plus the data position, so
rerunning the same command resumes where a killed run stopped."""
from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from lpjax import faults

# The layout of stored weights and optimizer states, in the keys of the
# stages that store them (base, probe, target): bump it when either changes,
# so a checkpoint in an old layout is never found and restored.
# "unit-lr-adamw": the optimizer state holds no schedule step (train.py);
# "stacked-layers": decoder layers are one module with a leading layers axis
# (lpjax/models/common.py stack_layers).
STORE_FORMAT = "unit-lr-adamw,stacked-layers"


class Checkpointer:
    def __init__(self, directory: str, max_to_keep: int = 2):
        self._manager = ocp.CheckpointManager(
            directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, position: dict[str, int]) -> None:
        self._manager.save(
            step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), position=ocp.args.JsonSave(position))
        )
        faults.point("ckpt-save")  # the write may still be in flight (Orbax saves asynchronously)

    def restore(self, step: int, like: Any) -> tuple[Any, dict[str, int]]:
        """Restore into the structure, shapes and shardings of `like`."""
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
        out = self._manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), position=ocp.args.JsonRestore())
        )
        return out.state, dict(out.position)

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def save_params(path: str, params: Any) -> None:
    """The final weights alone, for evaluation and export. Replaces what a
    killed run may have saved there already (the stage was not marked done,
    so it is redone; Orbax writes aside and renames, so a reader never sees
    half of it)."""
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(os.path.abspath(path), params, force=True)


def load_params(path: str, like: Any, shardings: Any = None) -> Any:
    """The weights save_params wrote, in the structure of ``like`` (arrays
    or shapes alone). ``shardings``: a tree of their shardings
    (lpjax/sharding.py ``param_shardings``): each array is read straight
    into its shards, never whole onto one device."""
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
    if shardings is not None:
        leaves, treedef = jax.tree_util.tree_flatten(abstract)
        placed = jax.tree_util.tree_leaves(shardings)
        if len(placed) != len(leaves):
            raise ValueError(f"{len(placed)} shardings for {len(leaves)} parameters")
        abstract = treedef.unflatten([jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s)
                                      for x, s in zip(leaves, placed)])
    with ocp.StandardCheckpointer() as ckptr:
        return ckptr.restore(os.path.abspath(path), abstract)
