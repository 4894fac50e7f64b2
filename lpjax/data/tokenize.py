"""Tokenize records into (ids, prompt length) pairs (tokenizers themselves: lpjax/data/tokenizer.py).

The authors' semantics (docs/method.md): prompt and output are tokenized
together, EOS is appended, the result is cut to the first ``max_len`` tokens,
and the prompt length is the token count of the prompt tokenized alone. With
a long prompt this cuts the response away entirely (ppl 1.0 at every epoch,
LP 0, ranked hardest: docs/method.md, "The known flaw"). ``truncation`` chooses:

- ``"official"``: exactly the authors' rule above.
- ``"keep_response"`` (default): a record that fits is encoded exactly as
  ``official``. One that does not has its prompt's free text shortened from
  the end (the input first, then the instruction; the template re-rendered
  around it, so "### Instruction:" ... "### Response:" stay intact) until
  prompt + output + EOS fits. Only a response too long by itself for
  ``max_len`` minus the bare template is still cut at its end; its prompt
  then keeps up to ``max_len // 2`` tokens (shortened the same way if
  longer), so the response is still scored after its instruction.
  ``Example.prompt_truncated`` counts the prompt tokens removed.
- ``"drop"``: ``official`` ids, but the examples whose response official
  truncation loses entirely are flagged ``dropped``; ``kept_indices`` lists
  the others (partly cut responses are kept, cut as ``official``).

``response_lost`` and ``truncation_stats`` report what truncation did.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .template import PROMPT_INPUT, PROMPT_NO_INPUT, build_prompt

TRUNCATIONS = ("official", "keep_response", "drop")


# eq=False: the generated __eq__/__hash__ would compare arrays, which is ambiguous.
@dataclass(frozen=True, eq=False)
class Example:
    """One tokenized record; the response (output + EOS) is ``ids[prompt_len:]``."""

    ids: np.ndarray  # int32, 1-D
    prompt_len: int
    num_truncated: int = 0  # tokens dropped from the end to fit max_len
    # Tokens removed from the prompt by ``truncation="keep_response"`` (the
    # input's end first, then the instruction's) so that the response fits.
    prompt_truncated: int = 0
    # ``truncation="drop"``: the authors' truncation would leave no response
    # token, so the caller should leave this sample out (``kept_indices``).
    dropped: bool = False

    @property
    def response_len(self) -> int:
        return len(self.ids) - self.prompt_len


def truncated_response(ex: Example) -> bool:
    """Whether truncation cut any response token (EOS included)."""
    return ex.num_truncated > 0


def response_lost(ex: Example) -> bool:
    """No response token left: the known flaw of docs/method.md, where ppl is 1.0 at every epoch."""
    return ex.prompt_len >= len(ex.ids)


def kept_indices(examples: list[Example]) -> np.ndarray:
    """Indices of the examples not flagged ``dropped`` (int64, ascending)."""
    return np.asarray([i for i, ex in enumerate(examples) if not ex.dropped], dtype=np.int64)


def truncation_stats(examples: list[Example]) -> dict:
    """Counts for a report: how truncation touched these examples."""
    return {
        "num_examples": len(examples),
        "response_lost": sum(response_lost(ex) for ex in examples),
        "response_truncated": sum(truncated_response(ex) for ex in examples),
        "prompt_truncated": sum(ex.prompt_truncated > 0 for ex in examples),
        "dropped": sum(ex.dropped for ex in examples),
    }


def _cut(prompt: list[int], full: list[int], eos: int, max_len: int, prompt_truncated: int = 0) -> Example:
    """The authors' rule on one tokenized pair: append EOS, keep the first max_len."""
    full = list(full) + [eos]
    ids = np.asarray(full[:max_len], dtype=np.int32)
    return Example(ids, min(len(prompt), len(ids)), len(full) - len(ids), prompt_truncated)


def _tokenize_pairs(tokenizer: Any, prompts: list[str], outputs: list[str], special: bool):
    prompt_ids = tokenizer(prompts, add_special_tokens=special)["input_ids"]
    # No separator: the output follows "### Response:" directly, as in the authors' code.
    texts = [p + o for p, o in zip(prompts, outputs)]
    full_ids = tokenizer(texts, add_special_tokens=special)["input_ids"]
    return prompt_ids, full_ids


# ----------------------------------------------------------------------------
# keep_response: shorten the prompt's free text, never the template.
#
# A "slot" is a free-text field of the prompt that may be shortened, in the
# order they are given up: for the Alpaca template (and chat records built
# from instruction/input) the input, then the instruction; for chat records
# with their own ``messages``, the context turns from the last to the first
# (the end of what formats.py joins into ``input``), then the user question.
# Each slot is cut at its end. The template is re-rendered around the
# shortened text, so its fixed parts ("### Instruction:", "### Response:",
# chat headers) stay intact; an Alpaca record with an input keeps the
# with-input form even if its input is shortened to nothing.


def _slots(record: dict, template: str) -> list[tuple]:
    messages = record.get("messages") if template == "chat" else None
    if not messages:
        return [("input",), ("instruction",)]
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    question = users[-1] if users else len(messages) - 1
    context = [("messages", i) for i in reversed(range(len(messages))) if i != question]
    return context + [("messages", question)]


def _get(record: dict, slot: tuple) -> str:
    return record.get(slot[0], "") if len(slot) == 1 else record["messages"][slot[1]]["content"]


def _set(record: dict, slot: tuple, text: str) -> dict:
    out = dict(record)
    if len(slot) == 1:
        out[slot[0]] = text
    else:
        out["messages"] = [dict(m) for m in record["messages"]]
        out["messages"][slot[1]]["content"] = text
    return out


def _render(record: dict, template: str, tokenizer: Any, with_input: bool) -> str:
    if template == "alpaca":
        # Fixed form (not build_prompt's `input != ""` test), so an input cut
        # to nothing keeps its "### Input:" block.
        form = PROMPT_INPUT if with_input else PROMPT_NO_INPUT
        return form.format(instruction=record["instruction"], input=record.get("input", ""))
    return build_prompt(record, template, tokenizer)


def _shorter(text: str, ids: list[int], offsets: list | None, drop: int) -> str:
    """``text`` without (about) its last ``drop`` tokens, as a prefix of ``text``.

    With a fast tokenizer the cut is at the first dropped token's character
    offset, so no token is decoded (byte-level tokens can split a character);
    otherwise proportionally by characters. The caller re-checks the length,
    so an estimate is enough; the result is always strictly shorter.
    """
    n = len(ids)
    if n == 0 or drop >= n:
        return ""
    if offsets is not None:
        cut = offsets[n - drop][0]
    else:
        cut = (len(text) * (n - drop)) // n
    return text[: min(cut, len(text) - 1)]


def _keep_response(
    tokenizer: Any, records: list[dict], prompt_ids: list, full_ids: list, max_len: int, template: str,
    special: bool,
) -> list[Example]:
    """Shorten the prompts of records whose prompt + output + EOS exceeds max_len.

    The target for each record: if its response (output + EOS) fits beside
    the bare template (every slot empty), the prompt is shortened just enough
    for the whole response to fit. If not, the response will be cut at its
    end anyway, and the prompt keeps up to half of max_len (shortened to
    that if longer, never below the bare template), so the response is still
    scored after its instruction with at least half the window.

    Works in rounds over the samples still too long, with batched tokenizer
    calls: measure the excess, cut that many tokens off the current slot,
    re-tokenize, repeat. Usually two rounds; every round strictly shortens a
    slot, so it ends.
    """
    eos = tokenizer.eos_token_id
    fast = bool(getattr(tokenizer, "is_fast", False))
    state = []
    for r in records:
        slots = _slots(r, template)
        empty = r
        for slot in slots:
            empty = _set(empty, slot, "")
        state.append({"record": r, "slots": slots, "slot": 0, "with_input": r.get("input", "") != "",
                      "empty": empty})
    skeletons = [_render(st["empty"], template, tokenizer, st["with_input"]) for st in state]
    skeleton_lens = [len(x) for x in tokenizer(skeletons, add_special_tokens=special)["input_ids"]]
    orig_prompt_lens = [len(p) for p in prompt_ids]
    # None: fit prompt + response + EOS into max_len; a number: the prompt's
    # budget for a response too long to keep whole.
    budget = []
    for p, f, skeleton in zip(prompt_ids, full_ids, skeleton_lens):
        response = len(f) + 1 - len(p)
        budget.append(None if skeleton + response <= max_len else max(skeleton, min(len(p), max_len // 2)))
    out: list[Example | None] = [None] * len(records)
    pending = list(range(len(records)))
    first = True
    while pending:
        if not first:  # the first round reuses the caller's tokenization
            prompts = [_render(state[i]["record"], template, tokenizer, state[i]["with_input"]) for i in pending]
            outputs = [state[i]["record"]["output"] for i in pending]
            prompt_ids, full_ids = _tokenize_pairs(tokenizer, prompts, outputs, special)
        first = False
        to_cut = []
        for i, p, f in zip(pending, prompt_ids, full_ids):
            st = state[i]
            excess = len(f) + 1 - max_len if budget[i] is None else len(p) - budget[i]
            while st["slot"] < len(st["slots"]) and not _get(st["record"], st["slots"][st["slot"]]):
                st["slot"] += 1
            if excess <= 0 or st["slot"] == len(st["slots"]):
                out[i] = _cut(p, f, eos, max_len, max(0, orig_prompt_lens[i] - len(p)))
            else:
                to_cut.append((i, excess))
        if not to_cut:
            break
        texts = [_get(state[i]["record"], state[i]["slots"][state[i]["slot"]]) for i, _ in to_cut]
        enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=fast)
        for k, ((i, excess), text) in enumerate(zip(to_cut, texts)):
            offsets = enc["offset_mapping"][k] if fast else None
            st = state[i]
            st["record"] = _set(st["record"], st["slots"][st["slot"]],
                                _shorter(text, enc["input_ids"][k], offsets, excess))
        pending = [i for i, _ in to_cut]
    return out


def encode_all(
    tokenizer: Any, records: list[dict], max_len: int, template: str = "alpaca",
    truncation: str = "keep_response",
) -> list[Example]:
    """``encode`` for many records, with batched tokenizer calls.

    Only the records that overflow ``max_len`` are tokenized again
    (``keep_response``), so the cost over the authors' rule is small.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be positive, got {max_len}")
    if truncation not in TRUNCATIONS:
        raise ValueError(f"unknown truncation {truncation!r}; expected one of {TRUNCATIONS}")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos token; the response target needs one")
    prompts = [build_prompt(r, template, tokenizer) for r in records]
    if not prompts:
        return []
    # A chat template writes its own special tokens (BOS included, where the
    # model uses one); adding them again would double BOS.
    special = template != "chat"
    prompt_ids, full_ids = _tokenize_pairs(tokenizer, prompts, [r["output"] for r in records], special)
    examples = [_cut(p, f, eos, max_len) for p, f in zip(prompt_ids, full_ids)]
    if truncation == "drop":
        return [replace(ex, dropped=True) if response_lost(ex) else ex for ex in examples]
    if truncation == "keep_response":
        over = [i for i, ex in enumerate(examples) if ex.num_truncated > 0]
        if over:
            fixed = _keep_response(tokenizer, [records[i] for i in over], [prompt_ids[i] for i in over],
                                   [full_ids[i] for i in over], max_len, template, special)
            for i, ex in zip(over, fixed):
                examples[i] = ex
    return examples


def encode(
    tokenizer: Any, record: dict, max_len: int, template: str = "alpaca", truncation: str = "keep_response"
) -> Example:
    """Tokenize one record (see the module docstring for the truncation policies)."""
    return encode_all(tokenizer, [record], max_len, template, truncation)[0]


def encode_response_only_all(tokenizer: Any, records: list[dict], max_len: int) -> list[Example]:
    """The responses alone, for IFD's denominator PPL(response).

    Each example is ``[BOS] + output tokens + [EOS]`` with ``prompt_len`` 1,
    or, for a tokenizer without a BOS token, ``output tokens + [EOS]`` with
    ``prompt_len`` 0 (then the first response token has no context and is not
    scored: the loss predicts token t from tokens before it). The output is
    tokenized on its own, so its first token may differ from the same text
    tokenized after "### Response:"; the rest match. Cut at max_len from the
    end, like the authors' rule; no template, so ``template`` does not apply.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be positive, got {max_len}")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos token; the response target needs one")
    if not records:
        return []
    bos = getattr(tokenizer, "bos_token_id", None)
    prefix = [] if bos is None else [bos]
    ids = tokenizer([r["output"] for r in records], add_special_tokens=False)["input_ids"]
    return [_cut(prefix, prefix + list(x), eos, max_len) for x in ids]


def encode_response_only(tokenizer: Any, record: dict, max_len: int) -> Example:
    """``encode_response_only_all`` for one record."""
    return encode_response_only_all(tokenizer, [record], max_len)[0]
