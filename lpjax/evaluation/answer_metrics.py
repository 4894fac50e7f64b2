"""Judge-free measures of a target's answers to test sets: the mean
log-likelihood of the reference answers where a set has them (Self-Instruct's
``instances[0].output``), exact match against them, and answer lengths.
They need no judge and run whenever answers are generated."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from flax import nnx
from jax.sharding import Mesh

from lpjax.data.tokenize import encode_all
from lpjax.evaluation.heldout import normalize_answer
from lpjax.evaluation.testsets import TestItem
from lpjax.evaluation.textstats import length_stats
from lpjax.scoring.score import EVAL_OPTIONS, make_score_fn, score_examples


def reference_loglik(graphdef: nnx.GraphDef, params: Any, tok: Any, items: Sequence[TestItem], *, template: str,
                     max_len: int, batch_size: int, pad_multiple: int = 16,
                     mesh: Mesh | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per item (log-likelihood sum, token count) of its reference answer
    (EOS included) after its prompt, with the scoring kernel; prompt and
    reference are fitted into max_len as training fits them."""
    records = [{**item.record(), "output": item.reference} for item in items]
    examples = encode_all(tok, records, max_len, template, "keep_response")
    loss_sum, count = score_examples(make_score_fn(graphdef, mesh), params, examples, batch_size, pad_multiple,
                                     **EVAL_OPTIONS)
    return -loss_sum, count


def set_metrics(rows: Sequence[dict], items: Sequence[TestItem], loglik: dict[tuple[str, str], tuple[float, float]],
                ) -> dict[str, dict]:
    """Per set: answer lengths, how many answers hit max_new_tokens, and
    where the set has references, their mean log-likelihood per token
    (token-weighted over the set), its perplexity, and exact match."""
    by_key = {(r["set"], r["id"]): r for r in rows}
    out: dict[str, dict] = {}
    for name in dict.fromkeys(item.set for item in items):
        members = [item for item in items if item.set == name]
        answers = [by_key[(item.set, item.id)] for item in members]
        m = {"num": len(members), "lengths": length_stats([a["answer"] for a in answers]),
             "stopped_at_limit": sum(a["stop"] == "length" for a in answers),
             "prompts_shortened": sum(a["prompt_truncated"] > 0 for a in answers)}
        refs = [item for item in members if item.reference is not None]
        if refs:
            total = sum(loglik[(i.set, i.id)][0] for i in refs)
            tokens = sum(loglik[(i.set, i.id)][1] for i in refs)
            mean = total / max(tokens, 1)
            m["reference"] = {
                "num": len(refs), "loglik_per_token": float(mean), "ppl": float(np.exp(-mean)), "tokens": int(tokens),
                "exact_match": float(np.mean([normalize_answer(by_key[(i.set, i.id)]["answer"])
                                              == normalize_answer(i.reference) for i in refs]))}
        out[name] = m
    return out
