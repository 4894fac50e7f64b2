"""lpjax's families against transformers' PyTorch models on tiny random checkpoints."""
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lpjax.loss import mean_loss
from lpjax.models.hf import load_hf
from lpjax.scoring.score import make_score_fn, score_examples
from tests.helpers import random_examples
from tests.unit.models.hf_cases import CASES, VOCAB, lpjax_logits, reference_model, torch_logits, torch_response_loss


def relative_error(got, want) -> float:
    return float(np.abs(np.asarray(got) - want).max() / np.abs(want).max())


@pytest.mark.parametrize("case", list(CASES))
def test_logits_and_response_loss_match_transformers(case, hf_checkpoint):
    path, ref = hf_checkpoint(case)
    model, hf_config = load_hf(path)
    assert hf_config["model_type"] == ref.config.model_type

    ids = np.random.default_rng(0).integers(0, VOCAB, (2, 13)).astype(np.int32)
    want = torch_logits(ref, ids)
    got = lpjax_logits(model, ids)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert relative_error(got, want) < 1e-4

    # Per-example response loss through the scoring path (right-padded,
    # length-bucketed batches, chunked loss) against a padded, masked
    # transformers batch.
    examples = random_examples(7, VOCAB, seed=1, max_len=16)
    graphdef, params = nnx.split(model)
    loss_sum, count = score_examples(make_score_fn(graphdef), params, examples, 4, 16)
    want = torch_response_loss(ref, examples)
    np.testing.assert_allclose(mean_loss(loss_sum, count), want, rtol=1e-4, atol=1e-7)
    assert (count > 0).sum() >= 4


def test_parameters_are_fp32_with_logical_axis_names(hf_checkpoint):
    allowed = {"layers", "vocab", "embed", "q_heads", "kv_heads", "mlp", "norm", "position", None}
    for case in ("llama_gqa_untied_bias", "opt_post_ln_proj", "gpt2"):
        model, _ = load_hf(hf_checkpoint(case)[0], compute_dtype="bfloat16")
        for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
            names = var.get_metadata().get("out_sharding")
            assert names is not None and len(names) == var.get_value().ndim, path
            assert set(names) <= allowed, (path, names)
            # Decoder layers are stacked: their parameters lead with the layer axis.
            assert (names[0] == "layers") == (path[0] in ("layers", "h")), (path, names)
            assert len([n for n in names if n]) == len({n for n in names if n}), (path, names)
            assert var.get_value().dtype == jnp.float32, path


def test_dynamic_ntk_rope_beyond_max_positions(hf_checkpoint):
    path, _ = hf_checkpoint("llama_dynamic_rope")
    ref = reference_model(path)  # fresh: transformers' dynamic rope keeps state between calls
    model, _ = load_hf(path)
    assert (model.cfg.rope_type, model.cfg.max_position_embeddings) == ("dynamic", 8)
    for length in (6, 13):  # within, then past max_position_embeddings (the base grows)
        ids = np.random.default_rng(length).integers(0, VOCAB, (1, length)).astype(np.int32)
        assert relative_error(lpjax_logits(model, ids), torch_logits(ref, ids)) < 1e-4


def test_bf16_compute_stays_close_to_fp32(hf_checkpoint):
    # (Llama's bf16 path is tests/test_loss.py's.)
    ids = np.random.default_rng(0).integers(0, VOCAB, (2, 9))
    for case in ("opt_post_ln_proj", "gpt2"):
        path, _ = hf_checkpoint(case)
        fp32 = lpjax_logits(load_hf(path)[0], ids)
        bf16 = lpjax_logits(load_hf(path, compute_dtype="bfloat16")[0], ids)
        assert np.isfinite(bf16).all() and relative_error(bf16, fp32) < 5e-2, case
