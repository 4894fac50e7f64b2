"""Tokenization follows the authors' semantics, checked against the raw tokenizers library."""
import os

import numpy as np
import pytest
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from lpjax.data.template import PROMPT_INPUT, PROMPT_NO_INPUT, build_prompt
from lpjax.data.tokenize import (
    TRUNCATIONS, Example, encode, encode_all, encode_response_only, encode_response_only_all, kept_indices,
    response_lost, truncated_response, truncation_stats,
)
from lpjax.data.tokenizer import train_bpe

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
    return train_bpe(TEXTS, 400, str(out)), str(out)


@pytest.fixture(scope="module")
def gpt2():
    if not os.path.isdir(GPT2):
        pytest.skip(f"{GPT2} is not available on this machine")
    return AutoTokenizer.from_pretrained(GPT2), Tokenizer.from_file(f"{GPT2}/tokenizer.json")


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
    ex = encode(tok, RECORD, plen + 1, truncation="official")
    assert ex.ids.tolist() == full[: plen + 1]
    assert ex.ids[-1] != 50256
    assert ex.prompt_len == plen and ex.response_len == 1 and ex.num_truncated == len(full) - plen - 1
    assert truncated_response(ex) and not response_lost(ex)


def test_prompt_longer_than_max_len_leaves_no_response(gpt2):
    tok, raw = gpt2
    plen = len(raw.encode(PROMPT).ids)
    ex = encode(tok, RECORD, plen - 3, truncation="official")
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


def test_bad_arguments(trained):
    tok, _ = trained
    with pytest.raises(ValueError, match="max_len"):
        encode(tok, RECORD, 0)


def test_example_is_frozen():
    ex = Example(np.array([1, 2, 3], dtype=np.int32), 1)
    with pytest.raises(AttributeError):
        ex.prompt_len = 2
    assert ex.num_truncated == 0 and ex.response_len == 2


# --------------------------------------------------------------------------
# Truncation policies (docs/method.md, "The known flaw").

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau".split()


def _text(n_words: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(WORDS, n_words)) + "."


LONG_INPUT = {"instruction": "Summarize the text below in one sentence.", "input": _text(300, 1),
              "output": "The text lists Greek letters."}
LONG_INSTRUCTION = {"instruction": "Read this carefully: " + _text(300, 2), "input": "", "output": "Done: ok."}
LONG_BOTH = {"instruction": "Consider: " + _text(150, 3), "input": _text(80, 4), "output": "Both are long ones."}
LONG_OUTPUT = {"instruction": "Write a lot.", "input": "about letters", "output": _text(400, 5)}
SHORTS = [RECORD, {"instruction": "Say hi.", "input": "", "output": "hi"},
          {"instruction": "Add 2 and 3.", "input": "2, 3", "output": "5"}]
MIXED = SHORTS + [LONG_INPUT, LONG_INSTRUCTION, LONG_BOTH, LONG_OUTPUT]


def _parse(text: str, record: dict) -> tuple[str, str | None, str]:
    """Split decoded ids into (instruction, input or None, after "### Response:"),
    checking that the template's fixed text is all there, in order."""
    form = PROMPT_INPUT if record["input"] else PROMPT_NO_INPUT
    head = form.split("{instruction}")[0]
    assert text.startswith(head), text[:120]
    body = text[len(head):]
    if record["input"]:
        ins, rest = body.split("\n\n### Input:\n", 1)
        inp, rest = rest.split("\n\n### Response:", 1)
    else:
        (ins, rest), inp = body.split("\n\n### Response:", 1), None
    return ins, inp, rest


@pytest.fixture(scope="module", params=["gpt2", "trained"])
def any_tok(request, tmp_path_factory):
    """(transformers tokenizer, raw tokenizers.Tokenizer, eos text)."""
    if request.param == "gpt2":
        if not os.path.isdir(GPT2):
            pytest.skip(f"{GPT2} is not available on this machine")
        return AutoTokenizer.from_pretrained(GPT2), Tokenizer.from_file(f"{GPT2}/tokenizer.json"), "<|endoftext|>"
    out = tmp_path_factory.mktemp("tok2")
    tok = train_bpe(TEXTS + [_text(200, 9)], 400, str(out))
    return tok, Tokenizer.from_file(f"{out}/tokenizer.json"), "</s>"


@pytest.mark.parametrize("max_len", [130, 200, 300])
def test_official_reproduces_the_flaw(any_tok, max_len):
    tok, raw, _ = any_tok
    for record in [LONG_INPUT, LONG_INSTRUCTION, LONG_BOTH]:
        assert len(raw.encode(build_prompt(record)).ids) > max_len
        ex = encode(tok, record, max_len, truncation="official")
        assert len(ex.ids) == max_len and ex.response_len == 0 and response_lost(ex)
        fixed = encode(tok, record, max_len)  # keep_response is the default
        assert not response_lost(fixed) and not truncated_response(fixed)


@pytest.mark.parametrize("max_len", [130, 160, 200, 300])
def test_keep_response_keeps_every_response_token_and_the_template(any_tok, max_len):
    tok, raw, eos_text = any_tok
    for record in [LONG_INPUT, LONG_INSTRUCTION, LONG_BOTH]:
        ex = encode(tok, record, max_len)
        assert len(ex.ids) <= max_len and ex.ids[-1] == tok.eos_token_id and ex.num_truncated == 0
        assert ex.prompt_truncated > 0 and len(ex.ids) >= max_len - 3  # cut about as much as needed
        ins, inp, rest = _parse(tok.decode(ex.ids.tolist(), skip_special_tokens=False).removeprefix("<s>"), record)
        assert rest == record["output"] + eos_text
        # Shortened from the end: the input first, then the instruction.
        assert record["instruction"].startswith(ins)
        if inp is not None:
            assert record["input"].startswith(inp)
            assert ins == record["instruction"] or inp == ""
        # Exactly the authors' tokenization of the shortened record.
        prompt = (PROMPT_INPUT if record["input"] else PROMPT_NO_INPUT).format(instruction=ins, input=inp)
        assert ex.ids.tolist() == raw.encode(prompt + record["output"]).ids + [tok.eos_token_id]
        assert ex.prompt_len == len(raw.encode(prompt).ids)
        assert ex.prompt_truncated == len(raw.encode(build_prompt(record)).ids) - ex.prompt_len


def test_input_goes_before_the_instruction(gpt2):
    tok, _ = gpt2
    ex = encode(tok, LONG_BOTH, 200)
    ins, inp, _ = _parse(tok.decode(ex.ids.tolist()), LONG_BOTH)
    assert inp == "" and 0 < len(ins) < len(LONG_BOTH["instruction"])
    ex = encode(tok, LONG_BOTH, 400)
    ins, inp, _ = _parse(tok.decode(ex.ids.tolist()), LONG_BOTH)
    assert ins == LONG_BOTH["instruction"] and 0 < len(inp) < len(LONG_BOTH["input"])


@pytest.mark.parametrize("record", [LONG_OUTPUT, dict(LONG_BOTH, output=LONG_OUTPUT["output"])])
def test_a_response_too_long_by_itself_is_cut_at_its_end(any_tok, record):
    tok, raw, _ = any_tok
    max_len = 200
    skeleton = len(raw.encode(PROMPT_INPUT.format(instruction="", input="")).ids)
    assert skeleton + len(raw.encode(record["output"], add_special_tokens=False).ids) + 1 > max_len
    ex = encode(tok, record, max_len)
    assert len(ex.ids) == max_len and ex.num_truncated > 0 and ex.ids[-1] != tok.eos_token_id
    assert truncated_response(ex) and not response_lost(ex)
    # The prompt keeps up to half the window (never less than the bare template).
    prompt_len = len(raw.encode(build_prompt(record)).ids)
    assert ex.prompt_len <= max(skeleton, min(prompt_len, max_len // 2))
    assert ex.prompt_len >= min(prompt_len, max_len // 2 - 3)
    ins, inp, rest = _parse(tok.decode(ex.ids.tolist()).removeprefix("<s>"), record)
    assert record["instruction"].startswith(ins) and record["input"].startswith(inp)
    assert record["output"].startswith(rest)
    prompt = PROMPT_INPUT.format(instruction=ins, input=inp)
    assert ex.ids.tolist() == raw.encode(prompt + record["output"]).ids[:max_len]
    if prompt_len <= max_len // 2:  # nothing to gain from a shorter prompt: as official
        official = encode(tok, record, max_len, truncation="official")
        assert ex.ids.tolist() == official.ids.tolist() and ex.prompt_truncated == 0


def test_records_that_fit_are_encoded_as_official(any_tok):
    tok, _, _ = any_tok
    official = encode_all(tok, MIXED, 1024, truncation="official")
    assert all(ex.num_truncated == 0 for ex in official)
    for max_len in (1024, 130):
        official = encode_all(tok, MIXED, max_len, truncation="official")
        kept = encode_all(tok, MIXED, max_len)
        for a, b in zip(official, kept):
            if a.num_truncated == 0:
                assert a.ids.tolist() == b.ids.tolist() and a.prompt_len == b.prompt_len
                assert b.prompt_truncated == 0


def test_batch_equals_one_by_one(gpt2):
    tok, _ = gpt2
    batch = encode_all(tok, MIXED, 90)
    for record, ex in zip(MIXED, batch):
        single = encode(tok, record, 90)
        assert ex.ids.tolist() == single.ids.tolist() and ex.prompt_len == single.prompt_len
        assert (ex.num_truncated, ex.prompt_truncated) == (single.num_truncated, single.prompt_truncated)


@pytest.mark.parametrize("max_len", [130, 200, 300, 1024])
def test_drop_flags_exactly_what_official_loses(any_tok, max_len):
    tok, _, _ = any_tok
    official = encode_all(tok, MIXED, max_len, truncation="official")
    dropped = encode_all(tok, MIXED, max_len, truncation="drop")
    assert [ex.dropped for ex in dropped] == [response_lost(ex) for ex in official]
    assert any(ex.dropped for ex in dropped) == (max_len < 1024)
    for a, b in zip(official, dropped):
        assert a.ids.tolist() == b.ids.tolist() and a.prompt_len == b.prompt_len
    assert kept_indices(dropped).tolist() == [i for i, ex in enumerate(official) if not response_lost(ex)]
    assert not any(ex.dropped for ex in encode_all(tok, MIXED, max_len))


def test_truncation_stats(gpt2):
    tok, _ = gpt2
    official = truncation_stats(encode_all(tok, MIXED, 90, truncation="official"))
    assert official == {"num_examples": 7, "response_lost": 3, "response_truncated": 4,
                        "prompt_truncated": 0, "dropped": 0}
    kept = truncation_stats(encode_all(tok, MIXED, 90))
    assert kept == {"num_examples": 7, "response_lost": 0, "response_truncated": 1,
                    "prompt_truncated": 4, "dropped": 0}
    assert truncation_stats(encode_all(tok, MIXED, 90, truncation="drop"))["dropped"] == 3


class _SlowTokenizer:
    """A tokenizer without offset mappings (like a slow SentencePiece one)."""

    is_fast = False

    def __init__(self, tok):
        self._tok = tok
        self.eos_token_id, self.bos_token_id = tok.eos_token_id, tok.bos_token_id

    def __call__(self, texts, add_special_tokens=True, return_offsets_mapping=False):
        assert not return_offsets_mapping
        return {"input_ids": self._tok(texts, add_special_tokens=add_special_tokens)["input_ids"]}


def test_keep_response_without_offsets(gpt2):
    tok, _ = gpt2
    slow = encode_all(_SlowTokenizer(tok), MIXED, 90)
    fast = encode_all(tok, MIXED, 90)
    for record, a, b in zip(MIXED, slow, fast):
        assert len(a.ids) <= 90 and a.num_truncated == b.num_truncated
        if a.num_truncated == 0:
            assert _parse(tok.decode(a.ids.tolist()), record)[2] == record["output"] + "<|endoftext|>"


def test_keep_response_chat_messages_cut_context_then_question(trained):
    _, out = trained
    tok = AutoTokenizer.from_pretrained(out)
    tok.chat_template = (
        "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant: "
    )
    system, question = _text(120, 6), "Which letter comes first? " + _text(60, 7)
    record = {"instruction": question, "input": "system: " + system, "output": "alpha is first.",
              "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}]}
    ex = encode(tok, record, 120, template="chat")
    text = tok.decode(ex.ids.tolist())
    assert text.endswith("assistant: alpha is first.</s>") and len(ex.ids) <= 120
    assert text.startswith("<s>system: \nuser: ") and text.count("<s>") == 1
    assert question.startswith(text[len("<s>system: \nuser: "):].split("\nassistant: ")[0])
    assert ex.num_truncated == 0 and ex.prompt_truncated > 0


def test_unknown_truncation(trained):
    tok, _ = trained
    assert TRUNCATIONS == ("official", "keep_response", "drop")
    with pytest.raises(ValueError, match="truncation"):
        encode(tok, RECORD, 64, truncation="left")


# --------------------------------------------------------------------------
# The response alone (IFD's denominator).

def test_response_only_with_bos(trained):
    tok, out = trained
    raw = Tokenizer.from_file(f"{out}/tokenizer.json")
    ex = encode_response_only(tok, RECORD, 64)
    assert ex.ids.tolist() == [1] + raw.encode("sun dog cat", add_special_tokens=False).ids + [2]
    assert ex.prompt_len == 1 and ex.response_len == len(ex.ids) - 1
    cut = encode_response_only(tok, RECORD, 3)
    assert cut.ids.tolist() == ex.ids.tolist()[:3] and truncated_response(cut)


def test_response_only_gpt2_uses_its_bos_and_none_without_one(gpt2):
    tok, raw = gpt2
    ex = encode_response_only_all(tok, [RECORD, LONG_INPUT], 64)
    assert ex[0].ids.tolist() == [50256] + raw.encode("sun dog cat").ids + [50256] and ex[0].prompt_len == 1
    assert tok.decode(ex[1].ids[1:].tolist()) == LONG_INPUT["output"] + "<|endoftext|>"
    no_bos = _SlowTokenizer(tok)
    no_bos.bos_token_id = None
    ex = encode_response_only(no_bos, RECORD, 64)
    assert ex.ids.tolist() == raw.encode("sun dog cat").ids + [50256] and ex.prompt_len == 0
    assert encode_response_only_all(tok, [], 64) == []
