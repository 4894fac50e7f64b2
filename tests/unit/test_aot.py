"""AotFunction: one executable per batch shape, compiled lazily or up front
in parallel threads; results against numpy."""
import gc

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lpjax.aot import FAST_COMPILE, LEGACY_EMITTERS, AotFunction, compile_stats, fast_compile_options


def step(w, batch):
    return jnp.tanh(batch["tokens"] @ w).sum(axis=-1)


def test_precompile_compiles_each_shape_once_and_matches_numpy():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 3)).astype(np.float32)
    batches = [{"tokens": rng.normal(size=(rows, 5)).astype(np.float32)} for rows in (2, 4, 2, 8)]
    fn = AotFunction(jax.jit(step), "test step")
    before = compile_stats()
    fn.precompile([(w, b) for b in batches], workers=2)
    assert compile_stats().since(before).compiles == 3  # shapes 2, 4, 8
    fn.precompile([(w, b) for b in batches])  # nothing new
    for b in batches:
        np.testing.assert_allclose(np.asarray(fn(w, b)), np.tanh(b["tokens"] @ w).sum(-1), rtol=1e-5)
    assert compile_stats().since(before).compiles == 3


def test_fast_compile_options_are_accepted_on_cpu_and_yield_to_xla_flags(monkeypatch):
    """XLA:CPU of the installed jax takes the options (an unknown option or
    preset name raises at compile) and the program still computes numpy's
    result; the legacy-emitter option is left out only where XLA refuses
    it; an option XLA_FLAGS sets is left to it; other platforms get none."""
    cpu = jax.devices("cpu")[:1]
    monkeypatch.setenv("XLA_FLAGS", "")
    options = fast_compile_options(cpu)
    assert options.items() >= FAST_COMPILE.items()
    x = np.linspace(-3, 3, 64, dtype=np.float32)
    fn = jax.jit(lambda v: jnp.tanh(v) * jnp.exp(v), compiler_options=options)
    np.testing.assert_allclose(fn(x), np.tanh(x) * np.exp(x), rtol=1e-5)
    for option, value in LEGACY_EMITTERS.items():
        if option not in options:
            with pytest.raises(Exception, match="No such compile option"):
                jax.jit(jnp.sin).lower(x).compile(compiler_options={option: value})
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0")
    assert fast_compile_options(cpu) == {k: v for k, v in options.items() if k != "xla_backend_optimization_level"}

    class Gpu:
        platform = "gpu"

    assert fast_compile_options(cpu + [Gpu()]) == {}


def test_tracing_runs_with_the_garbage_collector_paused_and_restores_it():
    seen = []

    def traced(w, batch):
        seen.append(gc.isenabled())
        return step(w, batch)

    w = np.ones((5, 3), np.float32)
    fn = AotFunction(jax.jit(traced), "test step")
    fn(w, {"tokens": np.ones((2, 5), np.float32)})
    fn.precompile([(w, {"tokens": np.ones((4, 5), np.float32)})])
    assert seen == [False, False] and gc.isenabled()
    gc.disable()
    try:
        fn(w, {"tokens": np.ones((3, 5), np.float32)})
        assert not gc.isenabled()  # the caller's setting stays
    finally:
        gc.enable()
    np.testing.assert_allclose(np.asarray(fn(w, {"tokens": np.ones((3, 5), np.float32)})), np.tanh(5.0) * 3, rtol=1e-6)
