"""Ahead-of-time compilation per batch shape, with memory use logged before
the first step of each shape runs (instead of letting jit compile lazily),
and the compile seconds counted (``compile_stats``; training and the probe
put them in metrics.jsonl)."""
from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import jax
from absl import logging


@dataclasses.dataclass
class CompileStats:
    """Compiles of this process's steps: how many, the seconds spent lowering
    and compiling them (or loading them from the persistent cache), and how
    many came from that cache."""

    compiles: int = 0
    seconds: float = 0.0
    cache_hits: int = 0

    def as_dict(self) -> dict:
        return {"compiles": self.compiles, "compile_s": round(self.seconds, 3), "compile_cache_hits": self.cache_hits}

    def since(self, earlier: "CompileStats") -> "CompileStats":
        return CompileStats(self.compiles - earlier.compiles, self.seconds - earlier.seconds,
                            self.cache_hits - earlier.cache_hits)


STATS = CompileStats()
_LOCK = threading.Lock()


def compile_stats() -> CompileStats:
    """A snapshot of the process-wide counts (``since`` gives a stage's share)."""
    with _LOCK:
        return dataclasses.replace(STATS)


def _on_event(event: str, **_: Any) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        with _LOCK:
            STATS.cache_hits += 1


jax.monitoring.register_event_listener(_on_event)


def log_compiled_memory(compiled: Any, what: str) -> None:
    """Print the compiled program's memory use before the first step runs."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # not every backend reports it
        return
    if m is None:
        return
    gib = lambda b: b / 2**30
    logging.info("%s: per-device memory: arguments %.3f GiB, outputs %.3f GiB, temporaries %.3f GiB", what,
                 gib(m.argument_size_in_bytes), gib(m.output_size_in_bytes), gib(m.temp_size_in_bytes))


OOM_HINT = ("it does not fit in device memory; try a larger fsdp or tensor mesh axis (--config.mesh.shape), "
            "a smaller batch_size or data.max_len, or bf16 compute (compute_dtype=bfloat16)")


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
                t0 = time.perf_counter()
                compiled = self._jitted.lower(*args).compile()
                seconds = time.perf_counter() - t0
                with _LOCK:
                    STATS.compiles += 1
                    STATS.seconds += seconds
                logging.info("%s %s: compiled in %.1f s", self._name, tuple(shape), seconds)
                log_compiled_memory(compiled, f"{self._name} {tuple(shape)}")
                self._compiled[key] = compiled
            return self._compiled[key](*args)
        except Exception as e:  # XlaRuntimeError has no stable import path
            if "RESOURCE_EXHAUSTED" in str(e) or "out of memory" in str(e).lower():
                raise MemoryError(f"{self._name} at batch shape {tuple(shape)}: {OOM_HINT}") from e
            raise
