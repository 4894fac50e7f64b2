"""Turn a record into the prompt the model sees (the response is appended later)."""
from __future__ import annotations

from typing import Any

from lpjax.errors import UserError

# Stanford Alpaca's templates, verbatim (docs/method.md). They end at
# "### Response:" with no newline: the authors' code appends the output
# directly, and the tokenization in tokenize.py does the same.
PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)

TEMPLATES = ("alpaca", "chat")


def chat_messages(record: dict) -> list[dict]:
    """The conversation up to the answer: the source's turns, or one user turn."""
    if record.get("messages"):
        return record["messages"]
    content = record["instruction"]
    if record.get("input", ""):
        content += "\n\n" + record["input"]
    return [{"role": "user", "content": content}]


def build_prompt(record: dict, template: str = "alpaca", tokenizer: Any = None) -> str:
    """The prompt text for ``record``.

    ``alpaca`` uses the with-input form exactly when ``input != ""``, the test
    in the authors' code; a whitespace-only input therefore still gets the
    ``### Input:`` block (neither shared dataset has one). ``chat`` renders the
    record with the tokenizer's own chat template, ending at the assistant's turn.
    """
    if template == "alpaca":
        form = PROMPT_INPUT if record.get("input", "") != "" else PROMPT_NO_INPUT
        # str.format only parses the template, so braces in the data are safe.
        return form.format(instruction=record["instruction"], input=record.get("input", ""))
    if template == "chat":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise UserError("data.template", "chat needs a tokenizer that has a chat_template; use alpaca or a "
                                             "tokenizer with one")
        try:
            return tokenizer.apply_chat_template(chat_messages(record), tokenize=False, add_generation_prompt=True)
        except ImportError as e:  # transformers renders chat templates with jinja2
            raise UserError("data.template", f"chat needs jinja2 ({e}); pip install jinja2") from None
    raise ValueError(f"unknown template {template!r}; expected one of {TEMPLATES}")
