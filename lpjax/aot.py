"""Ahead-of-time compilation per batch shape, with memory use logged before
the first step of each shape runs (instead of letting jit compile lazily)."""
from __future__ import annotations

from typing import Any

from lpjax.sharding import OOM_HINT, log_compiled_memory


class AotFunction:
    """Wraps a jitted function whose last argument is a batch dict; compiles
    once per set of batch shapes and reuses the executable."""

    def __init__(self, jitted: Any, name: str):
        self._jitted, self._name, self._compiled = jitted, name, {}

    def __call__(self, *args):
        batch = args[-1]
        shape = batch["tokens"].shape
        key = tuple((k, v.shape) for k, v in sorted(batch.items()) if hasattr(v, "shape"))
        try:
            if key not in self._compiled:
                compiled = self._jitted.lower(*args).compile()
                log_compiled_memory(compiled, f"{self._name} {tuple(shape)}")
                self._compiled[key] = compiled
            return self._compiled[key](*args)
        except Exception as e:  # XlaRuntimeError has no stable import path
            if "RESOURCE_EXHAUSTED" in str(e) or "out of memory" in str(e).lower():
                raise MemoryError(f"{self._name} at batch shape {tuple(shape)}: {OOM_HINT}") from e
            raise
