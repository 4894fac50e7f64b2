"""The one tokenizer loader and the default run's BPE, checked against
transformers' AutoTokenizer and the raw tokenizers library."""
import os
import shutil

import pytest

from lpjax.errors import UserError
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from lpjax.data.tokenizer import load_tokenizer, train_bpe
from tests.conftest import SHARED

GPT2 = os.path.join(SHARED, "tokenizers", "gpt2")
LLAMA2_SP = os.path.join(SHARED, "tokenizers", "llama2", "tokenizer.model")
STORIES = os.path.join(SHARED, "models", "stories260k")
# Alpaca-shaped text with numbers, and a pangram for the letters.
TEXTS = [f"### Instruction:\nAdd {a} and {b}.\n\n### Response:{a + b}" for a in range(5) for b in range(4)] + [
    "the quick brown fox jumps over the lazy dog"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    return train_bpe(TEXTS, 400, str(out)), str(out)


def test_trained_special_ids_and_bos(trained):
    tok, out = trained
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert [tok.convert_ids_to_tokens(i) for i in (0, 1, 2)] == ["<pad>", "<s>", "</s>"]
    ids = tok("cat dog")["input_ids"]
    raw = Tokenizer.from_file(f"{out}/tokenizer.json")
    assert ids == [1] + raw.encode("cat dog", add_special_tokens=False).ids
    # Byte-level: text never seen in training round-trips exactly.
    assert tok.decode(tok("héllo → wörld", add_special_tokens=False)["input_ids"]) == "héllo → wörld"


def test_trained_round_trips_through_auto_tokenizer(trained):
    tok, out = trained
    reopened = AutoTokenizer.from_pretrained(out)
    loaded = load_tokenizer(out)
    for text in TEXTS[:4] + ["unseen Ωmega 123"]:
        assert reopened(text)["input_ids"] == tok(text)["input_ids"] == loaded(text)["input_ids"]
    assert (reopened.pad_token, reopened.bos_token, reopened.eos_token) == ("<pad>", "<s>", "</s>")


def test_training_is_deterministic_and_replaces_the_directory(trained, tmp_path):
    _, out = trained
    (tmp_path / "stale.txt").write_text("from an earlier run")
    train_bpe(TEXTS, 400, str(tmp_path))
    with open(f"{out}/tokenizer.json") as a, open(tmp_path / "tokenizer.json") as b:
        assert a.read() == b.read()
    assert not (tmp_path / "stale.txt").exists()


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="vocab_size"):
        train_bpe(TEXTS, 100, str(tmp_path / "small"))
    assert not (tmp_path / "small").exists()
    with pytest.raises(UserError, match="not a tokenizer directory"):
        load_tokenizer(str(tmp_path / "missing"))


@pytest.mark.skipif(not os.path.isdir(GPT2), reason="needs ../shared/tokenizers/gpt2")
def test_load_tokenizer_without_eos_fails(tmp_path):
    tok = AutoTokenizer.from_pretrained(GPT2)
    tok.eos_token = None
    tok.save_pretrained(str(tmp_path))
    with pytest.raises(ValueError, match="no eos token"):
        load_tokenizer(str(tmp_path))


@pytest.mark.skipif(not os.path.isfile(LLAMA2_SP), reason="needs ../shared/tokenizers/llama2")
def test_sentencepiece_only_directory_keeps_llama_bos(tmp_path):
    shutil.copy(LLAMA2_SP, tmp_path / "tokenizer.model")
    tok = load_tokenizer(str(tmp_path))
    assert tok("Hello world")["input_ids"] == [1, 15043, 3186]
    assert tok.eos_token_id == 2
    assert tok.decode(tok("Hello world")["input_ids"], skip_special_tokens=True) == "Hello world"


@pytest.mark.skipif(not os.path.isdir(STORIES), reason="needs ../shared/models/stories260k")
def test_sentencepiece_only_checkpoint_tokenizes_like_its_tokenizer_json(tmp_path):
    for name in ("config.json", "tokenizer.model", "tokenizer_config.json"):
        shutil.copy(os.path.join(STORIES, name), tmp_path / name)
    text = "Once upon a time, there was a little girl named Lily. She liked café."
    want = Tokenizer.from_file(os.path.join(STORIES, "tokenizer.json")).encode(text).ids
    assert load_tokenizer(STORIES)(text)["input_ids"] == want
    assert load_tokenizer(str(tmp_path))(text)["input_ids"] == want
    assert want[0] == 1
