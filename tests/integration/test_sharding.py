"""The same train step and scoring on different meshes of 8 virtual CPU
devices (conftest.py sets XLA_FLAGS before jax is imported)."""
import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from lpjax import sharding
from lpjax.config import TrainConfig
from lpjax.scoring.score import make_score_fn, plan_scoring, score_examples
from lpjax.training.train import train
from tests.helpers import prefixed_examples, random_examples, tiny_model

pytestmark = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (virtual) devices; set XLA_FLAGS")

VOCAB = 64
MESHES = [(1, 1, 1), (8, 1, 1), (2, 4, 1), (2, 2, 2)]


def run_on(mesh_shape, tmp_path):
    mesh = sharding.make_mesh(mesh_shape, jax.devices()[: int(np.prod(mesh_shape))])
    cfg = TrainConfig(epochs=1, batch_size=8, lr=3e-3, pad_multiple=40, log_every=1000)
    examples = random_examples(24, VOCAB, seed=5)
    model = tiny_model(VOCAB, num_layers=1)
    params = train(model, examples, cfg, str(tmp_path / "x".join(map(str, mesh_shape))), seed=0, mesh=mesh)
    graphdef = nnx.graphdef(model)
    s, c = score_examples(make_score_fn(graphdef, mesh), params, examples, 8, 40)
    return params, s, c


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mesh")
    return {shape: run_on(shape, tmp) for shape in MESHES}


@pytest.mark.parametrize("shape", MESHES[1:])
def test_same_results_on_every_mesh(results, shape):
    ref_params, ref_s, ref_c = results[(1, 1, 1)]
    params, s, c = results[shape]
    np.testing.assert_array_equal(c, ref_c)
    np.testing.assert_allclose(s, ref_s, rtol=2e-5)
    for a, b in zip(jax.tree_util.tree_leaves(ref_params), jax.tree_util.tree_leaves(params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("shape", [(8, 1, 1), (2, 2, 2)])
def test_token_budget_response_head_and_prefixes_score_the_same_on_a_mesh(shape):
    """The fast scoring path (token-budget batches, LM head at response
    positions only, shared prefixes run once) on a mesh gives the plain
    path's per-sample losses on one device."""
    examples = prefixed_examples(40, VOCAB, seed=9)
    assert plan_scoring(examples, shared_prefix=True)[1].num == 2  # the prefix path is taken
    model = tiny_model(VOCAB, num_layers=1)
    graphdef, params = nnx.split(model)
    one = sharding.make_mesh((1, 1, 1), jax.devices()[:1])
    ref_s, ref_c = score_examples(make_score_fn(graphdef, one), sharding.shard_params(params, one), examples, 8, 40)
    mesh = sharding.make_mesh(shape, jax.devices()[:8])
    s, c = score_examples(make_score_fn(graphdef, mesh), sharding.shard_params(params, mesh), examples, 8, 8,
                          token_budget=512, response_head=True, shared_prefix=True, max_len=64)
    np.testing.assert_array_equal(c, ref_c)
    np.testing.assert_allclose(s, ref_s, rtol=2e-5, atol=1e-6)


def test_parameters_are_sharded_as_the_rules_say(results):
    params, _, _ = results[(2, 2, 2)]
    q = params["layers"]["self_attn"]["q_proj"]["kernel"][...]  # stacked: [layers, embed, q_heads]
    assert q.sharding.spec == P(None, "fsdp", "tensor")
    assert q.addressable_shards[0].data.shape == (q.shape[0], q.shape[1] // 2, q.shape[2] // 2)
    emb = params["embed_tokens"][...]
    assert emb.sharding.spec == P("tensor", "fsdp")
    assert emb.addressable_shards[0].data.shape == (VOCAB // 2, emb.shape[1] // 2)
    params8, _, _ = results[(8, 1, 1)]
    assert params8["layers"]["mlp"]["up_proj"]["kernel"][...].sharding.is_fully_replicated
