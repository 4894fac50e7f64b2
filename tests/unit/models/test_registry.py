"""Model specs: presets and checkpoint directories, the tokenizer directory
that goes with them, and their structure without their weights."""
import json
import os
import shutil

import jax
import numpy as np
import pytest
from flax import nnx

from lpjax.models import registry
from lpjax.models.family import CheckpointError
from lpjax.models.bert import BertConfig
from lpjax.models.gpt2 import GPT2LMHeadModel
from lpjax.models.llama import LlamaForCausalLM
from lpjax.training.checkpoint import load_params, save_params
from tests.unit.models.hf_cases import VOCAB, torch_logits


def test_presets_and_checkpoints_through_one_entry(hf_checkpoint):
    model = registry.load_model("llama-micro", vocab_size=50, seed=1, compute_dtype="bfloat16")
    assert isinstance(model, LlamaForCausalLM) and model.cfg.vocab_size == 50
    assert model.cfg.compute_dtype == "bfloat16"
    path, _ = hf_checkpoint("gpt2")
    model = registry.load_model(path, vocab_size=90)
    assert isinstance(model, GPT2LMHeadModel) and model.cfg.vocab_size == 96
    cfg = registry.model_config(path, 96)
    assert cfg == model.cfg
    assert isinstance(registry.build_model(cfg, seed=0), GPT2LMHeadModel)


def test_tokenizer_larger_than_embedding_is_refused(hf_checkpoint):
    with pytest.raises(ValueError, match="tokenizer has 97 tokens but the model's embedding only 96 rows"):
        registry.load_model(hf_checkpoint("opt_pre_ln")[0], vocab_size=97)


def test_unknown_spec_names_the_choices(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'llama-huge'; presets: llama-micro"):
        registry.model_config("llama-huge", 10)
    with pytest.raises(ValueError, match="without config.json"):
        registry.model_config(str(tmp_path), 10)


def test_tokenizer_path(hf_checkpoint, tmp_path):
    assert registry.tokenizer_path("llama-micro") is None
    with pytest.raises(CheckpointError, match="has no tokenizer"):
        registry.tokenizer_path(hf_checkpoint("gpt2")[0])
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "tokenizer.json").write_text("{}")
    assert registry.tokenizer_path(str(tmp_path)) == str(tmp_path)


def test_bert_is_refused_as_a_probe_or_target(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "bert", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 16}))
    for call in (registry.model_config, registry.load_model, registry.abstract_model):
        with pytest.raises(ValueError, match=r"'bert' is an encoder, not a causal language model; .*llama"):
            call(str(tmp_path))
    with pytest.raises(ValueError, match="BertConfig is an encoder"):
        registry.build_model(BertConfig(vocab_size=10, hidden_size=8, num_layers=1, num_heads=2,
                                        intermediate_size=16, max_position_embeddings=8), seed=0)


def test_abstract_model_reads_no_weights_and_takes_restored_params(hf_checkpoint, tmp_path, monkeypatch):
    import safetensors

    src, ref = hf_checkpoint("opt_post_ln_proj")
    save_params(str(tmp_path / "params"), nnx.state(registry.load_model(src), nnx.Param))
    # The checkpoint without its weights, and no safetensors file may be opened.
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(os.path.join(src, "config.json"), bare / "config.json")

    def no_reads(*args, **kwargs):
        raise AssertionError("abstract_model read a safetensors file")

    monkeypatch.setattr(safetensors, "safe_open", no_reads)
    abstract = registry.abstract_model(str(bare), vocab_size=VOCAB)
    graphdef, like = nnx.split(abstract, nnx.Param)
    assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(like))
    model = nnx.merge(graphdef, load_params(str(tmp_path / "params"), like))
    ids = np.random.default_rng(0).integers(0, VOCAB, (2, 9))
    np.testing.assert_allclose(np.asarray(model(ids)), torch_logits(ref, ids), atol=2e-5, rtol=1e-5)


def test_abstract_preset_is_shapes_only():
    abstract = registry.abstract_model("llama-micro", vocab_size=50)
    leaves = jax.tree.leaves(nnx.state(abstract, nnx.Param))
    assert all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves)
    # Tied embedding 50x32, q/o 32x32, k/v 32x16 (one kv head of 16), gate/up/down 32x64, three norms of 32.
    assert sum(int(np.prod(x.shape)) for x in leaves) == 50 * 32 + 2 * 32 * 32 + 2 * 32 * 16 + 3 * 32 * 64 + 3 * 32
