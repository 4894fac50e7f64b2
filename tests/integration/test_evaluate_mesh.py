"""The evaluate stage on a mesh of 8 virtual CPU devices (conftest.py sets
XLA_FLAGS before jax is imported): the tuned target's parameters
(lpjax/stages/common.py ``tuned_target``) are placed as lpjax/sharding.py's
rules say, and the held-out loss, exact match and generations equal those
of one device."""
import json
import os

import jax
import numpy as np
import pytest
from absl import logging
from flax import nnx

from configs.lp_app import get_config
from lpjax import sharding
from lpjax.data.template import build_prompt
from lpjax.evaluation.heldout import evaluate_model
from lpjax.models import registry
from lpjax.stages import data, evaluate
from lpjax.stages.common import encode, model_spec, read_split, side_tokenizer, tuned_target
from lpjax.training.checkpoint import save_params
from lpjax.validate import finalize, validate
from lpjax.workdir import StageResult, Workdir

pytestmark = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (virtual) devices; set XLA_FLAGS")

MESHES = [(1, 8, 1), (2, 2, 2)]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """The micro config's data stage, and a target/<subset> output holding
    params/ as the target stage writes them (a randomly initialized
    llama-micro: what is compared is where it runs, not what it learned)."""
    logging.set_verbosity(logging.WARNING)
    tmp = tmp_path_factory.mktemp("evaluate_mesh")
    cfg = get_config("micro")
    cfg.workdir = str(tmp / "w")
    cfg.pretrain.enabled, cfg.data.train_tokenizer = False, True
    cfg.evaluate.batch_size = 8  # one row per device on (1, 8, 1)
    cfg = finalize(cfg)
    d = Workdir(cfg.workdir).run(data.STAGE, cfg)
    tok = side_tokenizer(cfg.target, d, None)
    model = registry.load_model(model_spec(cfg.target, None), len(tok), seed=3,
                                compute_dtype=cfg.target.compute_dtype)
    save_params(str(tmp / "target" / "params"), nnx.split(model)[1])
    return cfg, d, StageResult("target/x", "0" * 16, str(tmp / "target"), {}), tmp


def one_device(cfg, d, t):
    """The stage's body on one device, without a mesh."""
    mesh = sharding.make_mesh((1, 1, 1), jax.devices()[:1])
    tok, graphdef, params = tuned_target(cfg.target, d, None, t, mesh)
    test = read_split(d, "test")
    prompts = [build_prompt(r, cfg.data.template, tok) for r in test]
    return evaluate_model(graphdef, params, tok, test, encode(cfg.data, tok, test), prompts, cfg.evaluate)


def check_placed_by_the_rules(params, mesh):
    """Every parameter's spec is the rules' spec for its logical axes, on this mesh."""
    split = 0
    for path, v in nnx.to_flat_state(params):
        names = v.get_metadata().get("out_sharding")
        value = v[...]
        assert value.sharding.mesh.shape == mesh.shape, path
        want = sharding.logical_to_spec(names, value.shape, mesh) if names is not None else jax.sharding.PartitionSpec()
        assert value.sharding.spec == want, (path, value.sharding.spec, want)
        split += any(axis is not None for axis in want)
    assert split > 0  # the mesh splits some weights: the comparison means something


@pytest.mark.parametrize("shape", MESHES)
def test_evaluate_on_a_mesh_is_sharded_by_the_rules_and_equals_one_device(tuned, shape, monkeypatch):
    cfg, d, t, tmp = tuned
    cfg.mesh.shape = shape
    validate(cfg, num_devices=8)
    seen = {}
    real = evaluate.evaluate_model

    def spy(graphdef, params, *args, mesh=None, **kwargs):
        seen["params"], seen["mesh"] = params, mesh
        return real(graphdef, params, *args, mesh=mesh, **kwargs)

    monkeypatch.setattr(evaluate, "evaluate_model", spy)
    work = Workdir(str(tmp / "x".join(map(str, shape))))
    ev = work.run(evaluate.STAGE, cfg, {"data": d, "base": None, "target": t}, {"subset": "x"}, name="evaluate/x")
    mesh = seen["mesh"]
    assert dict(mesh.shape) == dict(zip(sharding.MESH_AXES, shape))
    check_placed_by_the_rules(seen["params"], mesh)
    # tuned_target itself, called as the stage calls it.
    check_placed_by_the_rules(tuned_target(cfg.target, d, None, t, mesh)[2], mesh)

    with open(os.path.join(ev.dir, "results.json")) as f:
        got = json.load(f)
    ref = one_device(cfg, d, t)
    assert got["num_examples"] == ref["num_examples"] == cfg.data.test_size
    np.testing.assert_allclose(got["loss"], ref["loss"], rtol=1e-5)
    np.testing.assert_allclose(got["mean_ppl"], ref["mean_ppl"], rtol=1e-5)
    for a, b in zip(got["by_length"], ref["by_length"]):
        assert (a["bin"], a["num"], a["tokens"]) == (b["bin"], b["num"], b["tokens"])
        if b["loss"] is not None:
            np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)
    # Greedy decoding on the mesh: the same tokens as on one device.
    assert got["exact_match"] == ref["exact_match"] and got["samples"] == ref["samples"]
    assert any(s["generated"] for s in got["samples"])
