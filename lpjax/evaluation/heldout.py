"""Held-out metrics of a tuned model: response loss/perplexity (the same
kernel as scoring) and exact match of greedy generations."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from flax import nnx

from lpjax.config import EvaluateConfig
from lpjax.data.tokenize import Example
from lpjax.evaluation.generate import greedy_generate, make_greedy_fn
from lpjax.loss import perplexity
from lpjax.scoring.score import make_score_fn, score_examples


def normalize_answer(text: str) -> str:
    return " ".join(text.split())


def evaluate_model(graphdef: nnx.GraphDef, params: Any, tok: Any, records: Sequence[dict],
                   examples: Sequence[Example], prompts: Sequence[str], e: EvaluateConfig,
                   num_samples: int = 5) -> dict:
    """Response loss and mean perplexity of ``examples`` (the encoded
    ``records``), and exact match of greedy answers against each record's
    output, overall and per task family (``kind``) where records have one.
    ``prompts``: the prompt texts, for the sample generations kept."""
    loss_sum, count = score_examples(make_score_fn(graphdef), params, examples, e.batch_size, e.pad_multiple)
    greedy = make_greedy_fn(graphdef, e.max_new_tokens, tok.eos_token_id)
    outputs = greedy_generate(greedy, params, [ex.ids[: ex.prompt_len].tolist() for ex in examples],
                              e.max_new_tokens, e.batch_size, e.pad_multiple, tok.eos_token_id, tok.pad_token_id or 0)
    texts = [tok.decode(o, skip_special_tokens=True) for o in outputs]
    hits = np.array([normalize_answer(t) == normalize_answer(r["output"]) for t, r in zip(texts, records)])
    result = {
        "num_examples": len(records),
        "loss": float(loss_sum.sum() / max(count.sum(), 1)),
        "mean_ppl": float(perplexity(loss_sum, count).mean()),
        "exact_match": float(hits.mean()) if len(hits) else 0.0,
        "samples": [{"prompt": p, "reference": r["output"], "generated": t}
                    for p, r, t in list(zip(prompts, records, texts))[:num_samples]],
    }
    kinds = sorted({r["kind"] for r in records if "kind" in r})
    if kinds:
        result["exact_match_by_kind"] = {
            k: float(np.mean([h for h, r in zip(hits, records) if r.get("kind") == k])) for k in kinds
        }
    return result
