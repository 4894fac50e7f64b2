"""A tuned target's answers to test-set prompts, written as JSON lines and
resumable.

Prompts are rendered with the template the target was tuned with
(lpjax.data.template) and decoded with the KV-cached decoder
(lpjax/evaluation/generate.py), batched and on the mesh like training,
stopping at EOS or after ``max_new_tokens``. A prompt longer than
``max_len - max_new_tokens`` tokens is shortened the way training shortens
one (its input, then its instruction; the template kept:
``truncation=keep_response``), and the row says by how many tokens.

The file is rewritten (atomically) after every batch; a run killed midway
finds the answered prompts in it and generates only the rest.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

from flax import nnx
from jax.sharding import Mesh

from lpjax import atomic
from lpjax.data.tokenize import encode_all
from lpjax.evaluation.generate import decode
from lpjax.evaluation.testsets import TestItem


def _key(row: dict) -> tuple[str, str]:
    return row["set"], row["id"]


def read_answers(path: str) -> list[dict]:
    """The rows of an answers file ([] if there is none yet)."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def encode_prompts(tok: Any, items: Sequence[TestItem], template: str, limit: int) -> list[tuple[list[int], int]]:
    """(prompt token ids, tokens removed to fit ``limit``) per item."""
    # An empty response: keep_response then fits prompt + EOS into limit + 1.
    records = [{**item.record(), "output": ""} for item in items]
    examples = encode_all(tok, records, limit + 1, template, "keep_response")
    return [(ex.ids[: ex.prompt_len].tolist(), ex.prompt_truncated) for ex in examples]


def generate_answers(graphdef: nnx.GraphDef, params: Any, tok: Any, items: Sequence[TestItem], path: str, *,
                     template: str, max_new_tokens: int, max_len: int, batch_size: int, pad_multiple: int = 16,
                     mesh: Mesh | None = None, log: Callable[[dict], None] | None = None) -> list[dict]:
    """Answer every item with the model (graphdef, params), skipping those
    ``path`` already answers, and return the rows in item order: set, id,
    instruction, input, answer, prompt_tokens, prompt_truncated,
    answer_tokens, stop ("eos" or "length")."""
    keys = [(item.set, item.id) for item in items]
    if len(set(keys)) != len(keys):
        raise ValueError("test items must have distinct (set, id) pairs")
    wanted = set(keys)
    rows = {_key(r): r for r in read_answers(path) if _key(r) in wanted}
    todo = [item for item in items if (item.set, item.id) not in rows]
    encoded = encode_prompts(tok, todo, template, max_len - max_new_tokens)
    # Length order: each written batch then pads little.
    order = sorted(range(len(todo)), key=lambda i: len(encoded[i][0]))
    eos = tok.eos_token_id
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        outputs = decode(graphdef, params, [encoded[i][0] for i in chunk], max_new_tokens, eos,
                         batch_size=batch_size, multiple=pad_multiple, pad_id=tok.pad_token_id or 0, keep_eos=True,
                         mesh=mesh)
        for i, out in zip(chunk, outputs):
            item, (prompt, cut) = todo[i], encoded[i]
            stopped = bool(out) and out[-1] == eos
            body = out[:-1] if stopped else out
            rows[(item.set, item.id)] = {
                "set": item.set, "id": item.id, "instruction": item.instruction, "input": item.input,
                "answer": tok.decode(body, skip_special_tokens=True).strip(), "prompt_tokens": len(prompt),
                "prompt_truncated": cut, "answer_tokens": len(body), "stop": "eos" if stopped else "length"}
        atomic.write_jsonl(path, [rows[k] for k in keys if k in rows])
        if log is not None:
            log({"stage": "answers", "done": len(rows), "of": len(keys)})
    return [rows[k] for k in keys]
