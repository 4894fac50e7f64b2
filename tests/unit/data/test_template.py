"""The prompt strings, written out in full."""
import os

import pytest

from lpjax.errors import UserError

from lpjax.data.template import PROMPT_INPUT, PROMPT_NO_INPUT, build_prompt


def test_alpaca_with_input():
    record = {"instruction": "Add the numbers.", "input": "2, {3}", "output": "5"}
    assert build_prompt(record) == (
        "Below is an instruction that describes a task, paired with an input that provides "
        "further context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nAdd the numbers.\n\n### Input:\n2, {3}\n\n### Response:"
    )


def test_alpaca_without_input():
    record = {"instruction": "Say {hi}.", "input": "", "output": "hi"}
    assert build_prompt(record, "alpaca") == (
        "Below is an instruction that describes a task. Write a response that "
        "appropriately completes the request.\n\n"
        "### Instruction:\nSay {hi}.\n\n### Response:"
    )


def test_whitespace_input_keeps_the_input_block_as_the_authors_code_does():
    prompt = build_prompt({"instruction": "I", "input": " ", "output": ""})
    assert prompt.endswith("### Instruction:\nI\n\n### Input:\n \n\n### Response:")


def test_templates_end_at_response_marker():
    for form in (PROMPT_INPUT, PROMPT_NO_INPUT):
        assert form.endswith("### Response:")


class _ChatTokenizer:
    """Stands in for a tokenizer: renders messages the way a chat template would."""

    chat_template = "fake"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert tokenize is False and add_generation_prompt is True
        return "".join(f"<{m['role']}>{m['content']}</>" for m in messages) + "<assistant>"


def test_chat_builds_one_user_turn_from_instruction_and_input():
    record = {"instruction": "Add.", "input": "2, 3", "output": "5"}
    assert build_prompt(record, "chat", _ChatTokenizer()) == "<user>Add.\n\n2, 3</><assistant>"
    record = {"instruction": "Add.", "input": "", "output": "5"}
    assert build_prompt(record, "chat", _ChatTokenizer()) == "<user>Add.</><assistant>"


def test_chat_uses_the_records_own_messages():
    record = {"instruction": "Q2", "input": "user: Q1\nassistant: A1", "output": "A2",
              "messages": [{"role": "user", "content": "Q1"},
                           {"role": "assistant", "content": "A1"},
                           {"role": "user", "content": "Q2"}]}
    assert build_prompt(record, "chat", _ChatTokenizer()) == (
        "<user>Q1</><assistant>A1</><user>Q2</><assistant>"
    )


def test_chat_with_a_real_tokenizer_template():
    from transformers import AutoTokenizer

    path = "/work/shared/tokenizers/gpt2"
    if not os.path.isdir(path):
        pytest.skip(f"{path} is not available on this machine")
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = (
        "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant] {% endif %}"
    )
    record = {"instruction": "Add.", "input": "2, 3", "output": "5"}
    assert build_prompt(record, "chat", tok) == "[user] Add.\n\n2, 3\n[assistant] "


def test_chat_without_template_and_unknown_template_fail():
    with pytest.raises(UserError, match="chat_template"):
        build_prompt({"instruction": "a", "input": "", "output": ""}, "chat")
    with pytest.raises(ValueError, match="unknown template"):
        build_prompt({"instruction": "a", "input": "", "output": ""}, "vicuna")
