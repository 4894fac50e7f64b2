"""Held-out metrics of a tuned model: response loss/perplexity (the same
kernel as scoring) and exact match of greedy generations."""
from __future__ import annotations

from typing import Any

import ml_collections
import numpy as np
from flax import nnx

from lpjax.data import tokenize
from lpjax.data.template import build_prompt
from lpjax.evaluation.generate import greedy_generate, make_greedy_fn
from lpjax.loss import perplexity
from lpjax.scoring.score import make_score_fn, score_examples


def normalize_answer(text: str) -> str:
    return " ".join(text.split())


def evaluate_model(graphdef: nnx.GraphDef, params: Any, tok, records: list[dict], cfg: ml_collections.ConfigDict,
                   num_samples: int = 5) -> dict:
    e = cfg.evaluate
    multiple = cfg.target.train.pad_multiple
    examples = tokenize.encode_all(tok, records, cfg.data.max_len, cfg.data.template, cfg.data.truncation)
    loss_sum, count = score_examples(make_score_fn(graphdef), params, examples, e.batch_size, multiple)

    prompts = [ex.ids[: ex.prompt_len].tolist() for ex in examples]
    greedy = make_greedy_fn(graphdef, e.max_new_tokens, tok.eos_token_id)
    outputs = greedy_generate(greedy, params, prompts, e.max_new_tokens, e.batch_size, multiple,
                              tok.eos_token_id, tok.pad_token_id or 0)
    texts = [tok.decode(o, skip_special_tokens=True) for o in outputs]
    hits = np.array([normalize_answer(t) == normalize_answer(r["output"]) for t, r in zip(texts, records)])
    result = {
        "num_examples": len(records),
        "loss": float(loss_sum.sum() / max(count.sum(), 1)),
        "mean_ppl": float(perplexity(loss_sum, count).mean()),
        "exact_match": float(hits.mean()) if len(hits) else 0.0,
        "samples": [{"prompt": build_prompt(r, cfg.data.template), "reference": r["output"], "generated": t}
                    for r, t in list(zip(records, texts))[:num_samples]],
    }
    kinds = sorted({r["kind"] for r in records if "kind" in r})
    if kinds:
        result["exact_match_by_kind"] = {
            k: float(np.mean([h for h, r in zip(hits, records) if r.get("kind") == k])) for k in kinds
        }
    return result
