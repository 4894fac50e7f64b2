"""Held-out metrics of a tuned model: response loss/perplexity (the same
kernel as scoring), overall and by response length, exact match of greedy
generations (``evaluate.generate``), and the response loss of the reference
answers of other held-out sets (``evaluate.reference_sets``: Dolly,
Self-Instruct, ...), scored without generating anything.

Lengths are counted in scored response tokens, EOS included (after the
example is fitted into max_len), and binned by ``edges``: (16, 64, 256)
gives "1-16", "17-64", "65-256", "257+". A target tuned on long responses
may simply model long references better; the bins show whether it does."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from flax import nnx
from jax.sharding import Mesh

from lpjax.config import EvaluateConfig
from lpjax.data.tokenize import Example
from lpjax.errors import DataError
from lpjax.evaluation.generate import decode
from lpjax.evaluation.testsets import TestItem, TestSetSpec, load_test_set, parse_spec
from lpjax.loss import perplexity
from lpjax.scoring.score import EVAL_OPTIONS, make_score_fn, score_examples

LENGTH_EDGES = (16, 64, 256)


def normalize_answer(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------- length bins (pure)

def bin_labels(edges: Sequence[int] = LENGTH_EDGES) -> list[str]:
    """The bins' labels: (16, 64, 256) -> ["1-16", "17-64", "65-256", "257+"]."""
    edges = [int(e) for e in edges]
    if any(e < 1 for e in edges) or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"length edges must be positive and increasing, got {tuple(edges)}")
    lows = [1] + [e + 1 for e in edges]
    return [f"{lo}-{hi}" for lo, hi in zip(lows, edges)] + [f"{lows[-1]}+"]


def length_bins(counts: Sequence[float] | np.ndarray, edges: Sequence[int] = LENGTH_EDGES) -> list[str]:
    """Each length's bin label: a count c falls in the bin whose upper edge is
    the first edge >= c ("1-16" holds 1..16, "257+" everything above 256). A
    count of 0 (no response token left) falls in the first bin."""
    labels = bin_labels(edges)
    index = np.searchsorted(np.asarray(edges, np.int64), np.rint(np.asarray(counts, np.float64)).astype(np.int64),
                            side="left")
    return [labels[i] for i in index]


def loss_summary(loss_sum: np.ndarray, count: np.ndarray) -> dict:
    """num, tokens, loss (token-weighted mean loss per token; None without
    tokens) and mean_ppl (mean over samples of exp(mean loss); None without
    samples) of per-sample (loss sum, token count)."""
    loss_sum, count = np.asarray(loss_sum, np.float64), np.asarray(count, np.float64)
    tokens = float(count.sum())
    return {"num": int(len(count)), "tokens": int(round(tokens)),
            "loss": float(loss_sum.sum() / tokens) if tokens > 0 else None,
            "mean_ppl": float(perplexity(loss_sum, count).mean()) if len(count) else None}


def loss_by_length(loss_sum: np.ndarray, count: np.ndarray, edges: Sequence[int] = LENGTH_EDGES) -> list[dict]:
    """Per length bin, in order (empty bins kept: num 0, loss None):
    {"bin", "num", "tokens", "loss", "mean_ppl"} (``loss_summary`` of its samples)."""
    loss_sum, count = np.asarray(loss_sum, np.float64), np.asarray(count, np.float64)
    labels = np.asarray(length_bins(count, edges), dtype=object)
    return [{"bin": label, **loss_summary(loss_sum[labels == label], count[labels == label])}
            for label in bin_labels(edges)]


# ---------------------------------------------------------------- the held-out split

def evaluate_model(graphdef: nnx.GraphDef, params: Any, tok: Any, records: Sequence[dict],
                   examples: Sequence[Example], prompts: Sequence[str], e: EvaluateConfig,
                   num_samples: int = 5, mesh: Mesh | None = None) -> dict:
    """Response loss and mean perplexity of ``examples`` (the encoded
    ``records``), overall and by response length (``by_length``), and with
    ``e.generate`` exact match of greedy answers against each record's
    output, overall and per task family (``kind``) where records have one,
    with the first ``num_samples`` generations (``prompts``: their prompt
    texts). Without ``e.generate`` nothing is generated and the result has
    no exact_match, exact_match_by_kind or samples. With a mesh, scoring and
    decoding split each batch's rows over its data x fsdp axes (``params``
    placed by the sharding rules)."""
    loss_sum, count = score_examples(make_score_fn(graphdef, mesh), params, examples, e.batch_size, e.pad_multiple,
                                     **EVAL_OPTIONS)
    result = {
        "num_examples": len(records),
        "loss": float(loss_sum.sum() / max(count.sum(), 1)),
        "mean_ppl": float(perplexity(loss_sum, count).mean()),
        "by_length": loss_by_length(loss_sum, count),
    }
    if not e.generate:
        return result
    outputs = decode(graphdef, params, [ex.ids[: ex.prompt_len].tolist() for ex in examples], e.max_new_tokens,
                     tok.eos_token_id, batch_size=e.batch_size, multiple=e.pad_multiple, pad_id=tok.pad_token_id or 0,
                     mesh=mesh)
    texts = [tok.decode(o, skip_special_tokens=True) for o in outputs]
    hits = np.array([normalize_answer(t) == normalize_answer(r["output"]) for t, r in zip(texts, records)])
    result["exact_match"] = float(hits.mean()) if len(hits) else 0.0
    result["samples"] = [{"prompt": p, "reference": r["output"], "generated": t}
                         for p, r, t in list(zip(prompts, records, texts))[:num_samples]]
    kinds = sorted({r["kind"] for r in records if "kind" in r})
    if kinds:
        result["exact_match_by_kind"] = {
            k: float(np.mean([h for h, r in zip(hits, records) if r.get("kind") == k])) for k in kinds
        }
    return result


# ---------------------------------------------------------------- reference sets

def has_reference(item: TestItem) -> bool:
    """Whether an item has a reference answer to score (a blank one is none)."""
    return item.reference is not None and item.reference.strip() != ""


def reference_items(spec: TestSetSpec | str, limit: int = 0) -> list[TestItem]:
    """The first ``limit`` items (0 = all) of a set that have a reference
    answer, in file order; DataError if none has one."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    items = [item for item in load_test_set(spec) if has_reference(item)]
    if not items:
        field = spec.fields.reference
        raise DataError(spec.path, f"reference set {spec.name!r} has no reference answers "
                                   + (f"(field '{field}' is missing or empty in every record); "
                                      if field else "(no reference field named); ")
                                   + "name the field with #reference=FIELD or drop the set from "
                                     "evaluate.reference_sets")
    return items[:limit] if limit > 0 else items


def evaluate_references(graphdef: nnx.GraphDef, params: Any, tok: Any, specs: Sequence[TestSetSpec | str], *,
                        limit: int, template: str, max_len: int, batch_size: int, pad_multiple: int = 16,
                        mesh: Mesh | None = None, edges: Sequence[int] = LENGTH_EDGES) -> dict[str, dict]:
    """Per set (by name, in the order given): the response loss of its
    reference answers (EOS included) after their prompts, scored by
    ``answer_metrics.reference_loglik`` over the first ``limit`` items that
    have one: num, tokens, loss (token-weighted), mean_ppl, by_length."""
    from lpjax.evaluation.answer_metrics import reference_loglik  # it imports this module

    sets = [(parse_spec(s) if isinstance(s, str) else s) for s in specs]
    chosen = [reference_items(s, limit) for s in sets]
    items = [item for members in chosen for item in members]
    loglik, count = reference_loglik(graphdef, params, tok, items, template=template, max_len=max_len,
                                     batch_size=batch_size, pad_multiple=pad_multiple, mesh=mesh)
    loss_sum = -np.asarray(loglik, np.float64)
    out, start = {}, 0
    for spec, members in zip(sets, chosen):
        part = slice(start, start + len(members))
        start += len(members)
        out[spec.name] = {**loss_summary(loss_sum[part], count[part]),
                          "by_length": loss_by_length(loss_sum[part], count[part], edges)}
    return out
