"""save_hf writes directories that transformers opens with the same logits."""
import json
import os

import numpy as np
import pytest

from lpjax.data.tokenizer import train_bpe
from lpjax.models.hf import load_hf, save_hf
from lpjax.models.llama import LlamaConfig
from lpjax.models.registry import build_model
from tests.unit.models.hf_cases import CASES_ALL, VOCAB, lpjax_logits, reference_model, torch_logits

IDS = np.random.default_rng(3).integers(0, VOCAB, (2, 11))


@pytest.mark.parametrize("case", list(CASES_ALL))
@pytest.mark.parametrize("generated", [False, True], ids=["original_config", "generated_config"])
def test_reload_in_transformers_gives_same_logits(case, generated, hf_checkpoint, tmp_path):
    """By default the config.json the model came from is written back;
    lpjax's own rendering of its config (to_hf) must work as well."""
    path, _ = hf_checkpoint(case)
    # A fresh reference: transformers' dynamic rope keeps state between calls.
    ref = reference_model(path)
    model, hf_config = load_hf(path)
    out = save_hf(model, str(tmp_path / "out"), hf_config=model.cfg.to_hf() if generated else None)
    reloaded = reference_model(out)
    np.testing.assert_array_equal(torch_logits(reloaded, IDS), torch_logits(ref, IDS))
    with open(os.path.join(out, "config.json")) as f:
        written = json.load(f)
    assert written["model_type"] == ref.config.model_type
    if not generated:
        assert written == {**{k: v for k, v in hf_config.items() if k != "torch_dtype"}, "dtype": "float32"}


def test_sharded_save_reloads(hf_checkpoint, tmp_path):
    path, ref = hf_checkpoint("opt_post_ln_proj")
    model, hf_config = load_hf(path)
    out = save_hf(model, str(tmp_path / "out"), hf_config=hf_config, max_shard_bytes=16_000)
    assert os.path.isfile(os.path.join(out, "model.safetensors.index.json"))
    np.testing.assert_array_equal(torch_logits(reference_model(out), IDS), torch_logits(ref, IDS))
    # ...and lpjax reads its own sharded output back.
    again, _ = load_hf(out)
    assert again.cfg == model.cfg


def test_mismatched_hf_config_is_refused(hf_checkpoint, tmp_path):
    model, hf_config = load_hf(hf_checkpoint("gpt2")[0])
    with pytest.raises(ValueError, match=r"another architecture.*n?um_layers"):
        save_hf(model, str(tmp_path / "out"), hf_config={**hf_config, "n_layer": 3})


def test_preset_model_with_tokenizer_opens_in_transformers(tmp_path):
    pytest.importorskip("torch", reason="the reference is transformers' PyTorch model")
    from transformers import AutoTokenizer

    texts = [f"Instruction {i}: add {i} and {i + 1}. Response: {2 * i + 1}" for i in range(50)]
    tok = train_bpe(texts, 300, str(tmp_path / "tok"))
    model = build_model(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=48, num_layers=2,
                                    num_heads=4, num_kv_heads=2, tie_word_embeddings=False), seed=0)
    out = save_hf(model, str(tmp_path / "out"), tokenizer=str(tmp_path / "tok"))
    reloaded_tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    ids = np.asarray([reloaded_tok("Instruction 7: add 7 and 8.")["input_ids"]])
    assert ids.tolist() == [tok("Instruction 7: add 7 and 8.")["input_ids"]]
    want = lpjax_logits(model, ids)
    got = torch_logits(reference_model(out), ids)
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-4
    with open(os.path.join(out, "config.json")) as f:
        config = json.load(f)
    assert (config["eos_token_id"], config["bos_token_id"]) == (tok.eos_token_id, tok.bos_token_id)


def test_save_replaces_the_directory_whole_or_not_at_all(hf_checkpoint, tmp_path):
    path, ref = hf_checkpoint("opt_post_ln_proj")
    model, hf_config = load_hf(path)
    out = str(tmp_path / "out")
    save_hf(model, out, hf_config=hf_config, max_shard_bytes=16_000)
    save_hf(model, out, hf_config=hf_config)
    # No shard or index of the sharded save is left for transformers to trip over.
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors"]
    np.testing.assert_array_equal(torch_logits(reference_model(out), IDS), torch_logits(ref, IDS))

    class BrokenTokenizer:
        def save_pretrained(self, directory):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_hf(model, out, tokenizer=BrokenTokenizer(), hf_config=hf_config, max_shard_bytes=16_000)
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors"]
    assert [f for f in os.listdir(tmp_path) if f != "out"] == []  # no temporary directory left behind
