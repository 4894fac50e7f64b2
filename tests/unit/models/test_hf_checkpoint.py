"""Reading checkpoint directories: configs, sharded files, and clear errors."""
import json
import os
import shutil

import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

from lpjax.models import hf
from lpjax.models.hf import CheckpointError, is_checkpoint_dir, load_hf
from tests.unit.models.hf_cases import make_checkpoint


def params_of(model) -> dict:
    return {p: np.asarray(v.get_value()) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def copy_checkpoint(src: str, dst) -> str:
    shutil.copytree(src, dst)
    return str(dst)


def rewrite_tensors(path: str, edit) -> None:
    file = os.path.join(path, "model.safetensors")
    tensors = load_file(file)
    edit(tensors)
    save_file(tensors, file, metadata={"format": "pt"})


def test_rope_and_window_settings_are_read(hf_checkpoint):
    cfg = load_hf(hf_checkpoint("llama_tied_linear_rope")[0])[0].cfg
    assert (cfg.rope_type, cfg.rope_factor, cfg.rope_theta, cfg.head_dim, cfg.tie_word_embeddings) == (
        "linear", 2.0, 500.0, 16, True)
    cfg = load_hf(hf_checkpoint("llama3_rope_parameters")[0])[0].cfg
    assert (cfg.rope_type, cfg.rope_factor, cfg.rope_original_max_position_embeddings, cfg.num_kv_heads) == (
        "llama3", 8.0, 8, 1)
    assert load_hf(hf_checkpoint("mistral_sliding_window")[0])[0].cfg.sliding_window == 4
    cfg = load_hf(hf_checkpoint("opt_post_ln_proj")[0])[0].cfg
    assert (cfg.do_layer_norm_before, cfg.word_embed_proj_dim, cfg.has_final_layer_norm) == (False, 16, False)


def test_sharded_checkpoint_loads_like_a_single_file(hf_checkpoint, tmp_path):
    single, _ = hf_checkpoint("llama_gqa_untied_bias")
    make_checkpoint("llama_gqa_untied_bias", str(tmp_path), max_shard_size="20KB")
    assert os.path.isfile(tmp_path / "model.safetensors.index.json")
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".safetensors")]) > 2
    a, b = params_of(load_hf(single)[0]), params_of(load_hf(str(tmp_path))[0])
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_known_buffers_are_ignored_and_base_model_names_accepted(hf_checkpoint, tmp_path):
    # The original GPT-2 files come from GPT2Model: no "transformer." prefix,
    # and causal-mask buffers h.N.attn.bias / masked_bias.
    path = copy_checkpoint(hf_checkpoint("gpt2")[0], tmp_path / "gpt2")

    def to_base_model(t):
        for name in list(t):
            t[name.removeprefix("transformer.")] = t.pop(name)
        t["h.0.attn.bias"] = np.tril(np.ones((1, 1, 64, 64), np.float32))
        t["h.0.attn.masked_bias"] = np.array(-1e4, np.float32)

    rewrite_tensors(path, to_base_model)
    a, b = params_of(load_hf(hf_checkpoint("gpt2")[0])[0]), params_of(load_hf(path)[0])
    assert all(np.array_equal(a[k], b[k]) for k in a)

    # OPT's original files come from OPTModel: "decoder.*", plus a copy of the tied head.
    path = copy_checkpoint(hf_checkpoint("opt_post_ln_proj")[0], tmp_path / "opt")

    def opt_base_model(t):
        for name in list(t):
            t[name.removeprefix("model.")] = t.pop(name)
        t["lm_head.weight"] = t["decoder.embed_tokens.weight"]

    rewrite_tensors(path, opt_base_model)
    a, b = params_of(load_hf(hf_checkpoint("opt_post_ln_proj")[0])[0]), params_of(load_hf(path)[0])
    assert all(np.array_equal(a[k], b[k]) for k in a)

    path = copy_checkpoint(hf_checkpoint("llama_gqa_untied_bias")[0], tmp_path / "llama")
    rewrite_tensors(path, lambda t: t.update({"model.layers.0.self_attn.rotary_emb.inv_freq": np.ones(4, np.float32)}))
    load_hf(path)


def test_bf16_checkpoint_loads_as_fp32(hf_checkpoint, tmp_path):
    import ml_dtypes

    src = hf_checkpoint("opt_pre_ln")[0]
    path = copy_checkpoint(src, tmp_path / "bf16")
    rewrite_tensors(path, lambda t: t.update({k: v.astype(ml_dtypes.bfloat16) for k, v in t.items()}))
    a, b = params_of(load_hf(src)[0]), params_of(load_hf(path)[0])
    for key in a:
        assert b[key].dtype == np.float32
        np.testing.assert_allclose(b[key], a[key], rtol=1e-2, atol=1e-2)


def test_missing_tensor_is_named(hf_checkpoint, tmp_path):
    path = copy_checkpoint(hf_checkpoint("llama_gqa_untied_bias")[0], tmp_path / "ckpt")
    rewrite_tensors(path, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(CheckpointError, match=r"missing tensors: model\.layers\.1\.mlp\.up_proj\.weight"):
        load_hf(path)


def test_untied_head_missing_is_an_error(hf_checkpoint, tmp_path):
    path = copy_checkpoint(hf_checkpoint("llama_gqa_untied_bias")[0], tmp_path / "ckpt")
    rewrite_tensors(path, lambda t: t.pop("lm_head.weight"))
    with pytest.raises(CheckpointError, match=r"missing tensors: lm_head\.weight"):
        load_hf(path)


def test_unexpected_tensor_is_named(hf_checkpoint, tmp_path):
    path = copy_checkpoint(hf_checkpoint("opt_pre_ln")[0], tmp_path / "ckpt")
    rewrite_tensors(path, lambda t: t.update({"model.decoder.layers.0.adapter.weight": np.zeros((2, 2), np.float32)}))
    with pytest.raises(CheckpointError, match=r"unexpected tensors: model\.decoder\.layers\.0\.adapter\.weight"):
        load_hf(path)


def test_shape_mismatch_names_tensor_and_both_shapes(hf_checkpoint, tmp_path):
    path = copy_checkpoint(hf_checkpoint("llama_gqa_untied_bias")[0], tmp_path / "ckpt")
    with open(os.path.join(path, "config.json")) as f:
        cfg = json.load(f)
    cfg["intermediate_size"] = 48
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f)
    with pytest.raises(CheckpointError, match=r"model\.layers\.0\.mlp\.\w+_proj\.weight has shape \((64, 32|32, 64)\) "
                                              r"in the checkpoint, but .* expects \((48, 32|32, 48)\)"):
        load_hf(path)


def test_unsupported_model_type_is_named(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5", "vocab_size": 10}))
    with pytest.raises(CheckpointError, match=r"unsupported model_type 't5'; supported: llama, mistral, opt, gpt2, bert"):
        load_hf(str(tmp_path))


def test_directory_without_weights_or_config(tmp_path):
    assert not is_checkpoint_dir(str(tmp_path))
    with pytest.raises(CheckpointError, match="no config.json"):
        load_hf(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "vocab_size": 10, "n_embd": 8,
                                                       "n_layer": 1, "n_head": 2}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    assert is_checkpoint_dir(str(tmp_path))
    with pytest.raises(CheckpointError, match=r"no model.safetensors.*found pytorch_model.bin"):
        load_hf(str(tmp_path))


def test_unsupported_rope_type_is_named():
    cfg = {"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
           "num_hidden_layers": 1, "num_attention_heads": 2, "rope_parameters": {"rope_type": "yarn", "factor": 2.0}}
    with pytest.raises(ValueError, match="unsupported rope type 'yarn'"):
        hf.config_from_hf(cfg)
