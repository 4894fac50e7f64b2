"""Ahead-of-time compilation per batch shape, with memory use logged before
the first step of each shape runs (instead of letting jit compile lazily),
and the compile seconds counted (``compile_stats``; training and the probe
put them in metrics.jsonl); and the XLA options the train step compiles
with on CPU (``fast_compile_options``)."""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import gc
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from absl import logging


@dataclasses.dataclass
class CompileStats:
    """Compiles of this process's steps: how many, the seconds XLA spent
    compiling them (or loading them from the persistent cache), the seconds
    spent tracing and lowering them to StableHLO before that (Python work
    that no cache saves), and how many came from the cache."""

    compiles: int = 0
    seconds: float = 0.0
    trace_seconds: float = 0.0
    cache_hits: int = 0

    @property
    def total_seconds(self) -> float:
        return self.seconds + self.trace_seconds

    def as_dict(self) -> dict:
        return {"compiles": self.compiles, "compile_s": round(self.seconds, 3),
                "trace_s": round(self.trace_seconds, 3), "compile_cache_hits": self.cache_hits}

    def since(self, earlier: "CompileStats") -> "CompileStats":
        return CompileStats(self.compiles - earlier.compiles, self.seconds - earlier.seconds,
                            self.trace_seconds - earlier.trace_seconds, self.cache_hits - earlier.cache_hits)


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


# XLA:CPU's fast-compile preset (fewer LLVM passes: no SLP vectorizer or
# loop unrolling, portable math functions) with LLVM at O1 instead of O3.
# Every batch shape an epoch meets is a compile, and the step's time is in
# library matmuls that these options do not touch. A SmolLM2 [8, 256] train
# step, AMD EPYC, fresh processes, three each: compile 1.20-1.38 s against
# 1.59-1.81 s (jax 0.12.1) and 1.50-2.00 against 1.72-2.13 s (jax 0.10.2),
# steps alike (docs/performance.md, Compiling); gradients within 1.5e-4
# relative of the default's per leaf (LLVM O0, which the tests use, differs
# by 1.7e-4).
FAST_COMPILE = {"xla_cpu_opt_preset": "CPU_OPT_PRESET_FAST_COMPILE", "xla_backend_optimization_level": 1}

# XLA:CPU's older elemental kernel emitters instead of its MLIR fusion
# emitters, where the installed XLA still has the option (jax 0.10; jax 0.12
# removed it). A new [8, 336] SmolLM2 gradient program on top of the above,
# AMD EPYC, jax 0.10.2, both compiled in one process and their steps
# alternating: compile 1.04-1.17 s against 1.63-1.97 s, steps alike (median
# 8.17 vs 8.10 s, 8.69 vs 8.85 s), gradients bitwise equal
# (docs/performance.md, Compiling).
LEGACY_EMITTERS = {"xla_cpu_use_fusion_emitters": False}


@functools.cache
def _xla_accepts(device: Any, option: str, value: Any) -> bool:
    """Whether the installed XLA knows a compile option (an unknown one is
    an error at compile time, not something to skip silently elsewhere)."""
    probe = jax.jit(lambda x: x + 1).lower(jax.device_put(np.float32(0), device))
    try:
        probe.compile(compiler_options={option: value})
    except Exception as e:  # XlaRuntimeError has no stable import path
        if "No such compile option" in str(e):
            return False
        raise
    return True


def fast_compile_options(devices: Any) -> dict[str, Any]:
    """``FAST_COMPILE`` and, where XLA has them, ``LEGACY_EMITTERS``, for
    programs on CPU devices, minus any option XLA_FLAGS already sets (an
    explicit setting wins); {} elsewhere (the options are XLA:CPU's)."""
    devices = list(devices)
    if any(d.platform != "cpu" for d in devices):
        return {}
    options = dict(FAST_COMPILE)
    options.update({k: v for k, v in LEGACY_EMITTERS.items() if _xla_accepts(devices[0], k, v)})
    flags = os.environ.get("XLA_FLAGS", "")
    return {k: v for k, v in options.items() if f"--{k}=" not in flags}


OOM_HINT = ("it does not fit in device memory; try a larger fsdp or tensor mesh axis (--config.mesh.shape), "
            "a smaller batch_size or data.max_len, or bf16 compute (compute_dtype=bfloat16)")


def batch_shapes(args: tuple) -> tuple:
    """AotFunction's default key: the shapes in the call's last argument,
    a batch dict."""
    return tuple((k, v.shape) for k, v in sorted(args[-1].items()) if hasattr(v, "shape"))


class AotFunction:
    """Wraps a jitted function; compiles once per ``key(args)`` (by default
    the shapes of the batch dict that is its last argument) and reuses the
    executable. A function whose shapes never change takes ``key=lambda
    args: ()``: one compile, counted and logged as the others."""

    def __init__(self, jitted: Any, name: str, key: Callable[[tuple], tuple] = batch_shapes):
        self._jitted, self._name, self._key, self._compiled = jitted, name, key, {}

    @staticmethod
    def _shape(args: tuple) -> Any:
        batch = args[-1]
        return tuple(batch["tokens"].shape) if isinstance(batch, dict) and "tokens" in batch else ""

    def _lower(self, args: tuple) -> Any:
        with _gc_paused():
            return self._jitted.lower(*args)

    def _compile(self, lowered: Any, shape: tuple) -> Any:
        t0 = time.perf_counter()
        compiled = lowered.compile()
        logging.info("%s %s: compiled in %.1f s", self._name, shape, time.perf_counter() - t0)
        log_compiled_memory(compiled, f"{self._name} {shape}")
        return compiled

    def _count(self, compiles: int, trace_seconds: float, seconds: float) -> None:
        with _LOCK:
            STATS.compiles += compiles
            STATS.trace_seconds += trace_seconds
            STATS.seconds += seconds

    def precompile(self, arg_lists: list[tuple], workers: int | None = None) -> None:
        """Compile the shapes of several calls at once, in ``workers``
        threads (default: one per CPU, at most 8, which bounds the memory
        the compiler takes): XLA compiles outside the GIL, so a pass that
        needs many shapes waits less than their sum. Lowering (tracing)
        stays sequential."""
        todo = {}
        for args in arg_lists:
            key = self._key(args)
            if key not in self._compiled and key not in todo:
                todo[key] = args
        if not todo:
            return
        t0 = time.perf_counter()
        with _oom_as_memory_error(self._name, "several"):
            lowered = {key: (self._lower(args), self._shape(args)) for key, args in todo.items()}
            t1 = time.perf_counter()
            workers = max(1, min(len(lowered), workers or min(os.cpu_count() or 1, 8)))
            with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                futures = {key: pool.submit(self._compile, low, shape) for key, (low, shape) in lowered.items()}
                self._compiled.update({key: f.result() for key, f in futures.items()})
        self._count(len(todo), t1 - t0, time.perf_counter() - t1)

    def __call__(self, *args):
        shape, key = self._shape(args), self._key(args)
        with _oom_as_memory_error(self._name, shape):
            if key not in self._compiled:
                t0 = time.perf_counter()
                lowered = self._lower(args)
                t1 = time.perf_counter()
                self._compiled[key] = self._compile(lowered, shape)
                self._count(1, t1 - t0, time.perf_counter() - t1)
            return self._compiled[key](*args)


# Tracing and lowering a step allocates many short-lived Python objects,
# and each full collection of the cyclic garbage collector then walks every
# object the process holds (jax's caches, the model): lowering a new
# SmolLM2 [8, L] gradient program took 0.28-0.31 s when one ran during it
# and 0.13-0.15 s with the collector paused (AMD EPYC, jax 0.10.2, one
# process, shapes alternating). Reference counting still frees what the
# lowering drops; the collector resumes after it.
@contextlib.contextmanager
def _gc_paused():
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextlib.contextmanager
def _oom_as_memory_error(name: str, shape: Any):
    try:
        yield
    except Exception as e:  # XlaRuntimeError has no stable import path
        if "RESOURCE_EXHAUSTED" in str(e) or "out of memory" in str(e).lower():
            raise MemoryError(f"{name} at batch shape {shape}: {OOM_HINT}") from e
        raise
