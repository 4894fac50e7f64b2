"""Tokenization follows the authors' semantics, checked against the raw tokenizers library."""
import os

import numpy as np
import pytest
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from lpjax.data.tokenize import (
    Example, encode, encode_all, load_tokenizer, response_lost, train_tokenizer,
    truncated_response,
)

GPT2 = "/work/shared/tokenizers/gpt2"
TEXTS = [
    "Below is an instruction that describes a task. Write a response.",
    "### Instruction:\nReverse the words.\n\n### Input:\ncat dog sun\n\n### Response:sun dog cat",
    "What is 12 + 30? 42. What is 7 * 6? 42.",
    "the quick brown fox jumps over the lazy dog",
] * 5
RECORD = {"instruction": "Reverse the words.", "input": "cat dog sun", "output": "sun dog cat"}
PROMPT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\nReverse the words.\n\n### Input:\ncat dog sun\n\n### Response:"
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    return train_tokenizer(TEXTS, 400, str(out)), str(out)


@pytest.fixture(scope="module")
def gpt2():
    if not os.path.isdir(GPT2):
        pytest.skip(f"{GPT2} is not available on this machine")
    return AutoTokenizer.from_pretrained(GPT2), Tokenizer.from_file(f"{GPT2}/tokenizer.json")


def test_trained_special_ids_and_bos(trained):
    tok, _ = trained
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert [tok.convert_ids_to_tokens(i) for i in (0, 1, 2)] == ["<pad>", "<s>", "</s>"]
    ids = tok("cat dog")["input_ids"]
    assert ids[0] == 1 and 1 not in ids[1:]
    # Byte-level: text never seen in training round-trips exactly.
    assert tok.decode(tok("héllo → wörld", add_special_tokens=False)["input_ids"]) == "héllo → wörld"


def test_trained_round_trips_through_auto_tokenizer(trained):
    tok, out = trained
    reopened = AutoTokenizer.from_pretrained(out)
    for text in TEXTS[:4] + ["unseen Ωmega 123"]:
        assert reopened(text)["input_ids"] == tok(text)["input_ids"]
    assert (reopened.pad_token, reopened.bos_token, reopened.eos_token) == ("<pad>", "<s>", "</s>")
    assert load_tokenizer(out)(TEXTS[0])["input_ids"] == tok(TEXTS[0])["input_ids"]


def test_training_is_deterministic(trained, tmp_path):
    _, out = trained
    train_tokenizer(TEXTS, 400, str(tmp_path))
    with open(f"{out}/tokenizer.json") as a, open(tmp_path / "tokenizer.json") as b:
        assert a.read() == b.read()


def test_encode_with_trained_tokenizer(trained):
    tok, out = trained
    raw = Tokenizer.from_file(f"{out}/tokenizer.json")  # the reference, not transformers
    ex = encode(tok, RECORD, 512)
    expected_prompt = raw.encode(PROMPT).ids
    expected = raw.encode(PROMPT + "sun dog cat").ids + [2]
    assert expected_prompt[0] == 1 and expected[0] == 1  # BOS from the post-processor
    assert ex.ids.dtype == np.int32 and ex.ids.ndim == 1
    assert ex.ids.tolist() == expected
    assert ex.prompt_len == len(expected_prompt)
    assert tok.decode(ex.ids[ex.prompt_len:].tolist()) == "sun dog cat</s>"
    assert not truncated_response(ex) and not response_lost(ex)


def test_encode_with_gpt2_has_no_bos_and_ends_with_endoftext(gpt2):
    tok, raw = gpt2
    ex = encode(tok, RECORD, 512)
    assert ex.ids[-1] == 50256 and ex.ids[0] != 50256
    assert ex.prompt_len == len(raw.encode(PROMPT).ids)
    assert tok.decode(ex.ids[: ex.prompt_len].tolist()) == PROMPT
    assert tok.decode(ex.ids[ex.prompt_len:].tolist()) == "sun dog cat<|endoftext|>"
    assert ex.response_len == len(raw.encode(PROMPT + "sun dog cat").ids) + 1 - ex.prompt_len


def test_truncation_cuts_the_end_and_the_eos(gpt2):
    tok, raw = gpt2
    full = raw.encode(PROMPT + "sun dog cat").ids + [50256]
    plen = len(raw.encode(PROMPT).ids)
    ex = encode(tok, RECORD, plen + 1)
    assert ex.ids.tolist() == full[: plen + 1]
    assert ex.ids[-1] != 50256
    assert ex.prompt_len == plen and ex.response_len == 1 and ex.num_truncated == len(full) - plen - 1
    assert truncated_response(ex) and not response_lost(ex)


def test_prompt_longer_than_max_len_leaves_no_response(gpt2):
    tok, raw = gpt2
    plen = len(raw.encode(PROMPT).ids)
    ex = encode(tok, RECORD, plen - 3)
    assert len(ex.ids) == plen - 3 and ex.prompt_len == plen - 3 and ex.response_len == 0
    assert truncated_response(ex) and response_lost(ex)


def test_encode_all_matches_one_by_one_and_no_input_form(gpt2):
    tok, raw = gpt2
    records = [RECORD, {"instruction": "Say hi.", "input": "", "output": "hi"}]
    batch = encode_all(tok, records, 64)
    no_input = (
        "Below is an instruction that describes a task. Write a response that "
        "appropriately completes the request.\n\n### Instruction:\nSay hi.\n\n### Response:"
    )
    assert batch[1].ids.tolist() == raw.encode(no_input + "hi").ids + [50256]
    assert batch[1].prompt_len == len(raw.encode(no_input).ids)
    for record, ex in zip(records, batch):
        single = encode(tok, record, 64)
        assert ex.ids.tolist() == single.ids.tolist() and ex.prompt_len == single.prompt_len
    assert encode_all(tok, [], 64) == []


def test_chat_template_adds_no_second_bos(trained):
    tok, out = trained
    tok = AutoTokenizer.from_pretrained(out)
    tok.chat_template = (
        "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "assistant: "
    )
    raw = Tokenizer.from_file(f"{out}/tokenizer.json")
    ex = encode(tok, {"instruction": "hi", "input": "", "output": "yo"}, 64, template="chat")
    assert ex.ids.tolist() == raw.encode("<s>user: hi\nassistant: yo", add_special_tokens=False).ids + [2]
    assert ex.ids.tolist().count(1) == 1


def test_bad_arguments(trained, tmp_path):
    tok, _ = trained
    with pytest.raises(ValueError, match="max_len"):
        encode(tok, RECORD, 0)
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(TEXTS, 100, str(tmp_path))
    with pytest.raises(FileNotFoundError):
        load_tokenizer(str(tmp_path / "missing"))


def test_load_tokenizer_without_eos_fails(tmp_path):
    if not os.path.isdir(GPT2):
        pytest.skip(f"{GPT2} is not available on this machine")
    tok = AutoTokenizer.from_pretrained(GPT2)
    tok.eos_token = None
    tok.save_pretrained(str(tmp_path))
    with pytest.raises(ValueError, match="no eos token"):
        load_tokenizer(str(tmp_path))


def test_example_is_frozen():
    ex = Example(np.array([1, 2, 3], dtype=np.int32), 1)
    with pytest.raises(AttributeError):
        ex.prompt_len = 2
    assert ex.num_truncated == 0 and ex.response_len == 2
