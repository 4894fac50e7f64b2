"""Model specs: presets and checkpoint directories; tokenizers that go with them."""
import os
import shutil

import pytest

from lpjax.models import registry
from lpjax.models.gpt2 import GPT2LMHeadModel
from lpjax.models.llama import LlamaForCausalLM
from tests.conftest import SHARED

LLAMA2_SP = os.path.join(SHARED, "tokenizers", "llama2", "tokenizer.model")
STORIES = os.path.join(SHARED, "models", "stories260k")


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
    with pytest.raises(FileNotFoundError, match="has no tokenizer"):
        registry.tokenizer_path(hf_checkpoint("gpt2")[0])
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "tokenizer.json").write_text("{}")
    assert registry.tokenizer_path(str(tmp_path)) == str(tmp_path)


@pytest.mark.skipif(not os.path.isfile(LLAMA2_SP), reason="needs ../shared/tokenizers/llama2")
def test_sentencepiece_only_directory_keeps_llama_bos(tmp_path):
    shutil.copy(LLAMA2_SP, tmp_path / "tokenizer.model")
    tok = registry.load_tokenizer(str(tmp_path))
    assert tok("Hello world")["input_ids"] == [1, 15043, 3186]
    assert tok.eos_token_id == 2
    assert tok.decode(tok("Hello world")["input_ids"], skip_special_tokens=True) == "Hello world"


@pytest.mark.skipif(not os.path.isdir(STORIES), reason="needs ../shared/models/stories260k")
def test_sentencepiece_only_checkpoint_tokenizes_like_its_tokenizer_json(tmp_path):
    for name in ("config.json", "tokenizer.model", "tokenizer_config.json"):
        shutil.copy(os.path.join(STORIES, name), tmp_path / name)
    text = "Once upon a time, there was a little girl named Lily. She liked café."
    want = registry.load_tokenizer(STORIES)(text)["input_ids"]
    assert registry.load_tokenizer(str(tmp_path))(text)["input_ids"] == want
    assert want[0] == 1
