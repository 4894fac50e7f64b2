"""The Flax BERT port, loaded through hf.load_hf, against transformers' BertModel on tiny random configs."""
import json

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the reference is transformers' PyTorch model")
from transformers import BertConfig as HFBertConfig
from transformers import BertModel

from lpjax.models.bert import BertConfig, BertEncoder, hf_tensor_map
from lpjax.models.family import abstract_module
from lpjax.models.hf import load_hf


def _save_tiny_bert(path, seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=64, max_position_embeddings=48, type_vocab_size=2)
    cfg.update(overrides)
    model = BertModel(HFBertConfig(**cfg)).eval()
    # Random init leaves LayerNorm at (1, 0): perturb it so the port's norms are tested.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(str(path))
    return model


def load_bert(path):
    model, _ = load_hf(path)
    assert isinstance(model, BertEncoder)
    return model


def _torch_hidden(model, ids, mask, types):
    with torch.no_grad():
        return model(input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask).long(),
                     token_type_ids=torch.from_numpy(types).long()).last_hidden_state.numpy()


@pytest.mark.parametrize("act", ["gelu", "gelu_new"])
def test_matches_transformers_bertmodel(tmp_path, act):
    ref = _save_tiny_bert(tmp_path, hidden_act=act)
    enc = load_bert(str(tmp_path))
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 97, (3, 11)).astype(np.int32)
    types = rng.integers(0, 2, (3, 11)).astype(np.int32)
    mask = np.ones((3, 11), np.int32)
    mask[1, 7:] = 0  # right padding
    mask[2, 2:] = 0
    ids[mask == 0] = 0
    expected = _torch_hidden(ref, ids, mask, types)
    got = np.asarray(enc(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types)))
    real = mask.astype(bool)
    # Pad positions' outputs are unused (pooling masks them): compare real tokens.
    np.testing.assert_allclose(got[real], expected[real], atol=2e-5, rtol=1e-5)


def test_padding_does_not_change_real_tokens(tmp_path):
    _save_tiny_bert(tmp_path)
    enc = load_bert(str(tmp_path))
    ids = np.array([[5, 6, 7, 8]], np.int32)
    short = np.asarray(enc(jnp.asarray(ids), jnp.ones((1, 4), jnp.int32)))
    padded_ids = np.concatenate([ids, np.zeros((1, 6), np.int32)], axis=1)
    padded_mask = (padded_ids != 0).astype(np.int32)
    padded = np.asarray(enc(jnp.asarray(padded_ids), jnp.asarray(padded_mask)))
    np.testing.assert_allclose(padded[:, :4], short, atol=1e-5)


def test_bert_for_x_prefix_and_config(tmp_path):
    # A BertForMaskedLM-style file prefixes the encoder with "bert." and adds
    # heads; the pooler of a BertModel file is not loaded either.
    ref = _save_tiny_bert(tmp_path / "plain")
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(tmp_path / "plain" / "model.safetensors"))
    (tmp_path / "prefixed").mkdir()
    assert "pooler.dense.weight" in tensors
    extra = {"cls.predictions.bias": np.zeros(97, np.float32), "bert.embeddings.position_ids": np.arange(48)[None]}
    save_file({f"bert.{k}": v for k, v in tensors.items()} | extra, str(tmp_path / "prefixed" / "model.safetensors"))
    (tmp_path / "prefixed" / "config.json").write_text((tmp_path / "plain" / "config.json").read_text())
    enc = load_bert(str(tmp_path / "prefixed"))
    ids = np.array([[3, 4, 5]], np.int32)
    ones = np.ones_like(ids)
    np.testing.assert_allclose(np.asarray(enc(jnp.asarray(ids), jnp.asarray(ones))),
                               _torch_hidden(ref, ids, ones, np.zeros_like(ids)), atol=2e-5)
    cfg = BertConfig.from_hf(json.loads((tmp_path / "plain" / "config.json").read_text()))
    assert (cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.layer_norm_eps) == (32, 2, 4, 1e-12)


def test_unsupported_config_fails_loudly():
    base = dict(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    with pytest.raises(ValueError, match="position_embedding_type"):
        BertConfig.from_hf(base | {"position_embedding_type": "relative_key"})
    with pytest.raises(ValueError, match="unsupported activation 'quick_gelu'"):
        BertConfig.from_hf(base | {"hidden_act": "quick_gelu"})
    with pytest.raises(ValueError, match="model_type"):
        BertConfig.from_hf(base | {"model_type": "roberta"})


def test_every_parameter_has_logical_axes_and_a_checkpoint_name():
    from flax import nnx

    cfg = BertConfig(vocab_size=11, hidden_size=8, num_layers=2, num_heads=2, intermediate_size=16,
                     max_position_embeddings=12)
    flat = dict(nnx.to_flat_state(nnx.state(abstract_module(cfg), nnx.Param)))
    assert set(flat) == {t.path for t in hf_tensor_map(cfg).values()}
    for path, var in flat.items():
        names = var.get_metadata().get("out_sharding")
        assert names is not None and len(names) == var.get_value().ndim, path
