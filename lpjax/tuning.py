"""What lpjax chooses for the machine it runs on, and the caches that keep
those choices (and compiled programs) between runs.

- ``cache_dir()``: ``$LPJAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/lpjax``,
  else ``~/.cache/lpjax``.
- ``enable_compilation_cache()``: JAX's persistent compilation cache in
  ``cache_dir()/xla``, so a rerun, a resumed run or a second target with the
  same shapes loads its train and scoring steps instead of compiling them
  (``LPJAX_COMPILATION_CACHE=0`` turns it off, ``=PATH`` moves it).
- ``Tuned``: measured choices, one small JSON file per (what, machine,
  model shape) in ``cache_dir()/tuning``, written atomically; a machine
  measures once and every later run reads the file.
- ``score_token_budget``: the scoring batch size (rows x length tokens) that
  runs fastest here, measured on the real scoring step
  (``probe.score_token_budget=0``, the default). Scoring batches change no
  score beyond float rounding, so the choice is free; the probe stage
  records it in its output and a resumed run keeps it.

An explicit setting always wins; nothing here runs then.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from absl import logging

from lpjax import atomic

# Bump when the way a choice is measured changes: older cached choices are ignored.
TUNING_VERSION = 1


def cache_dir() -> str:
    """Where lpjax keeps what it learns about this machine (tuned choices,
    compiled programs): $LPJAX_CACHE_DIR, $XDG_CACHE_HOME/lpjax or ~/.cache/lpjax."""
    if os.environ.get("LPJAX_CACHE_DIR"):
        return os.environ["LPJAX_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "lpjax")


def enable_compilation_cache() -> str | None:
    """Turn on JAX's persistent compilation cache (every jit lowered and
    compiled from now on is looked up there first, and stored after a
    compile of 0.05 s or more: with the train step's fast-compile options a
    small model's gradient compiles in about 0.1 s, which a 0.2 s bar left
    to be compiled again on every run, while loading one takes 0.02-0.05
    s). Returns its directory, or None when
    LPJAX_COMPILATION_CACHE=0. The cache is size-capped (4 GiB, least
    recently used entries go first) and file-locked, so concurrent runs may
    share it."""
    setting = os.environ.get("LPJAX_COMPILATION_CACHE", "")
    if setting.lower() in ("0", "false", "off", "no"):
        return None
    path = setting or os.path.join(cache_dir(), "xla")
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.05)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_max_size", 4 << 30)
    return path


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_key() -> dict:
    """What a measured choice depends on besides the model: the backend, its
    devices (kind and count), on CPU the processor model and the cores this
    process may use, and the jax version (XLA's code generation changes)."""
    devices = jax.devices()
    key = {"backend": jax.default_backend(), "device_kind": devices[0].device_kind, "devices": len(devices),
           "processes": jax.process_count(), "jax": jax.__version__}
    if key["backend"] == "cpu":
        key["cpu"] = _cpu_model()
        key["cores"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return key


def model_key(model_cfg: Any) -> dict:
    """The model's shape (its config minus where it was loaded from)."""
    fields = dataclasses.asdict(model_cfg) if dataclasses.is_dataclass(model_cfg) else dict(model_cfg)
    fields.pop("hf_source", None)
    return {"family": type(model_cfg).__name__, **fields}


class Tuned:
    """A measured choice cached per (what, machine, model shape, extra):
    ``get()`` returns the stored record or None, ``put(record)`` stores it
    atomically. The file names the key it was stored under."""

    def __init__(self, what: str, model_cfg: Any, extra: dict | None = None, directory: str | None = None):
        self.key = {"what": what, "version": TUNING_VERSION, "machine": machine_key(), "model": model_key(model_cfg),
                    **(extra or {})}
        digest = hashlib.sha256(json.dumps(self.key, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.path = os.path.join(directory or os.path.join(cache_dir(), "tuning"), f"{what}-{digest}.json")

    def get(self) -> dict | None:
        try:
            with open(self.path) as f:
                stored = json.load(f)
        except (OSError, ValueError):
            return None
        return stored.get("record") if stored.get("key") == json.loads(json.dumps(self.key, default=str)) else None

    def put(self, record: dict) -> None:
        try:
            atomic.write_json(self.path, {"key": self.key, "record": record, "time": time.time()})
        except OSError as e:  # a read-only home: measure again next time
            logging.warning("tuning: cannot cache %s in %s: %s", self.key["what"], self.path, e)


# ----------------------------------------------------------------------------
# Scoring: the token budget


def budget_candidates(backend: str, smallest: int, data_tokens: int | None = None) -> list[int]:
    """Budgets to try, smallest first: powers of two from the smallest that
    holds one row of the longest bucket. On CPU the best is small (the
    activations stay in cache; a 2-core machine peaks near 512-2048 tokens
    with a 135M model), on accelerators large (the device fills up).
    ``data_tokens``: the pass's tokens in all; no budget past the first that
    holds them is tried (its batches could only be padding)."""
    low, high = (256, 16384) if backend == "cpu" else (4096, 1 << 18)
    start = 1 << max(int(np.ceil(np.log2(max(smallest, 1)))), int(np.log2(low)))
    if data_tokens is not None:
        high = min(high, 1 << int(np.ceil(np.log2(max(data_tokens, 1)))))
    return [b for b in (start << i for i in range(20)) if b <= max(high, start)]


def time_call(fn: Callable[[], Any], min_seconds: float = 0.3, max_repeats: int = 5) -> float:
    """The best wall time of ``fn`` (which must block until its result is
    ready) after a warm-up call (which compiles): one timed call, more while
    they take under ``min_seconds`` in all (short steps are noisy)."""
    fn()
    best, spent, calls = float("inf"), 0.0, 0
    while calls < 1 or (spent < min_seconds and calls < max_repeats):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, spent, calls = min(best, dt), spent + dt, calls + 1
    return best


def pick_fastest(rates: dict[int, float], tolerance: float = 0.03) -> int:
    """The candidate with the highest rate; among those within ``tolerance``
    of it, the largest (fewer, larger batches: less dispatch, fewer shapes)."""
    best = max(rates.values())
    return max(k for k, r in rates.items() if r >= (1 - tolerance) * best)


def tune_budget(measure: Callable[[int], float], candidates: Sequence[int], give_up: float = 0.95,
                max_seconds: float = 60.0) -> dict:
    """Measure ``measure(budget) -> tokens/s`` over increasing candidates;
    stop at the first that falls below ``give_up`` x the best so far (the
    rate rises, peaks and falls with the budget: past the peak), after an
    out-of-memory error, or past ``max_seconds``. Returns {"token_budget",
    "rates"}."""
    rates: dict[int, float] = {}
    t0 = time.perf_counter()
    for budget in candidates:
        try:
            rates[budget] = measure(budget)
        except MemoryError:
            break
        if rates[budget] < give_up * max(rates.values()) or time.perf_counter() - t0 > max_seconds:
            break
    if not rates:
        raise MemoryError(f"no scoring batch of {candidates[0]} tokens fits in device memory")
    return {"token_budget": pick_fastest(rates), "rates": {str(k): v for k, v in rates.items()}}


def typical_length(row_lengths: Sequence[int], buckets: Sequence[int]) -> int:
    """The bucket that holds the token-weighted median row: half of all
    tokens sit in rows at most this long."""
    lengths = np.sort(np.asarray(row_lengths, np.int64))
    cum = np.cumsum(lengths)
    median = int(lengths[np.searchsorted(cum, cum[-1] / 2)]) if len(lengths) else 1
    return next((b for b in sorted(buckets) if b >= median), max(buckets))
