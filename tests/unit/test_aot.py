"""AotFunction: one executable per batch shape, compiled lazily or up front
in parallel threads; results against numpy."""
import jax
import jax.numpy as jnp
import numpy as np

from lpjax.aot import AotFunction, compile_stats


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
