"""Pairwise judging of two models' answers, as the data-selection
literature evaluates (AlpaGasus, Cherry_LLM, arXiv 2402.10430), and the
parts its scripts lack.

``judge_pairwise`` asks a judge to score both answers to every question
twice, in both orders (lpjax/evaluation/judge_protocol.py), turns the
scores into per-question verdicts and figures (judge_stats.py), and keeps
every reply in a request cache under ``workdir`` (judge_cache.py): a killed
run resumes without repeating a request, a rerun sends nothing. It needs no
launcher, JAX or config: tools can call it directly.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from absl import logging

from lpjax.evaluation import judge_stats
from lpjax.evaluation.judge_backends import JudgeError, LpjaxBackend, OpenAIBackend, Reply, Request
from lpjax.evaluation.judge_cache import RequestCache, request_key
from lpjax.evaluation.judge_protocol import PROMPT_VERSION, messages, parse_scores
from lpjax.evaluation.testsets import TestItem
from lpjax.evaluation.textstats import length_stats

__all__ = ["JudgeError", "JudgeResult", "judge_pairwise"]

ORDERS = ("ab", "ba")  # ab: A is Assistant 1; ba: B is


@dataclasses.dataclass
class JudgeResult:
    """What a pairwise judgement of A against B found (see ``to_dict`` for the keys)."""

    win: int
    tie: int
    lose: int
    unparsed: int  # questions without a verdict (an unparsed reply in either order)
    winning_score: float | None  # (W - L) / (W + T + L) + 1
    win_rate: float | None  # W / (W + T + L)
    ci95: tuple[float, float] | None  # paired bootstrap over questions
    flip_rate: float | None  # share of verdicts that swapping the order changed
    unparsed_replies: list[dict]  # id, set, order, reply of every reply without two scores
    per_set: dict[str, dict]  # the same figures per test set (when questions carry set names)
    lengths: dict[str, dict]  # answer length statistics of side a and side b
    by_longer: dict[str, dict]  # the figures where a answered longer, where b did, and where both as long
    tokens: dict[str, int]  # judge tokens over all requests (from the replies' usage)
    requests: dict[str, int]  # total, sent by this call, taken from the cache
    verdicts: list[dict]  # per question: id, set, scores in each order, verdict per order, verdict
    judge: dict  # backend identity, prompt version, sampling settings

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _items(prompts: Sequence[str | dict | TestItem]) -> list[TestItem]:
    """Questions as TestItems: plain strings are numbered; dicts need an
    ``instruction`` and may have ``input``, ``id`` and ``set``."""
    items = []
    for i, p in enumerate(prompts):
        if isinstance(p, TestItem):
            items.append(p)
        elif isinstance(p, str):
            items.append(TestItem(str(i), p, "", None, ""))
        else:
            items.append(TestItem(str(p.get("id", i)), p["instruction"], p.get("input", ""), None, p.get("set", "")))
    return items


def _backend(base_url: str, model: str, backend: str, api_key: str | None, api_key_env: str, temperature: float,
             max_tokens: int, concurrency: int, timeout: float, max_retries: int, backoff: float, seed: int):
    if backend == "openai":
        if api_key is None and api_key_env:
            api_key = os.environ.get(api_key_env)
            if not api_key:
                raise JudgeError(f"judge API key: environment variable {api_key_env} is not set")
        return OpenAIBackend(base_url, model, api_key, temperature=temperature, max_tokens=max_tokens,
                             timeout=timeout, max_retries=max_retries, concurrency=concurrency, backoff=backoff)
    if backend == "lpjax":
        return LpjaxBackend(model, temperature=temperature, max_tokens=max_tokens, seed=seed)
    raise ValueError(f"unknown judge backend {backend!r}; expected openai or lpjax")


def judge_pairwise(base_url: str, model: str, prompts: Sequence[str | dict | TestItem], answers_a: Sequence[str],
                   answers_b: Sequence[str], workdir: str, *, backend: str = "openai", api_key: str | None = None,
                   api_key_env: str = "", temperature: float = 0.0, max_tokens: int = 1024, concurrency: int = 4,
                   timeout: float = 120.0, max_retries: int = 5, backoff: float = 1.0, bootstrap: int = 2000,
                   seed: int = 0, client: Any = None) -> JudgeResult:
    """Judge answers_a against answers_b on every prompt, in both orders.

    base_url/model: an OpenAI-compatible endpoint (``http://host:port/v1``)
    and the model name it serves; with ``backend="lpjax"``, model is a local
    Hugging Face checkpoint directory and base_url is unused. The API key is
    ``api_key`` or the environment variable ``api_key_env``. Replies are
    cached under ``workdir/judge_cache``. ``client``: any object with
    ``identity``, ``sampling`` and ``run(requests, done)`` in place of the
    built-in backends. Raises JudgeError (one line) when the judge cannot be
    reached or refuses a request; the replies received until then are kept."""
    items = _items(prompts)
    if not len(items) == len(answers_a) == len(answers_b):
        raise ValueError(f"{len(items)} prompts, {len(answers_a)} answers a, {len(answers_b)} answers b: "
                         "one answer per prompt on each side")
    judge = client or _backend(base_url, model, backend, api_key, api_key_env, temperature, max_tokens,
                               concurrency, timeout, max_retries, backoff, seed)
    cache = RequestCache(os.path.join(workdir, "judge_cache"))

    keys: list[dict[str, str]] = []  # per question: order -> request key
    requests: dict[str, Request] = {}
    for item, a, b in zip(items, answers_a, answers_b):
        keys.append({})
        for order in ORDERS:
            first, second = (a, b) if order == "ab" else (b, a)
            key = request_key({"judge": judge.identity, "prompt_version": PROMPT_VERSION,
                               "question": item.instruction, "input": item.input, "answer_1": first,
                               "answer_2": second, "order": order, "sampling": judge.sampling})
            keys[-1][order] = key
            requests.setdefault(key, Request(key, messages(item.question(), first, second)))

    pending = [r for key, r in requests.items() if cache.get(key) is None]
    logging.info("judge %s: %d requests, %d cached, sending %d", judge.identity, len(requests),
                 len(requests) - len(pending), len(pending))
    lock, sent = threading.Lock(), [0]

    def done(request: Request, reply: Reply) -> None:
        cache.put(request.key, {"reply": reply.text, "usage": reply.usage, "judge": judge.identity,
                                "prompt_version": PROMPT_VERSION, "messages": request.messages, "time": time.time()})
        with lock:
            sent[0] += 1

    if pending:
        judge.run(pending, done)
    replies = {key: cache.get(key) for key in requests}
    return _result(items, answers_a, answers_b, keys, replies, bootstrap, seed,
                   {"identity": judge.identity, "prompt_version": PROMPT_VERSION, **judge.sampling},
                   {"total": len(requests), "sent": sent[0], "cached": len(requests) - sent[0]})


def _verdict(item: TestItem, keys: dict[str, str], replies: dict[str, dict], unparsed: list[dict]) -> dict:
    verdict = {"id": item.id, "set": item.set}
    for order in ORDERS:
        reply = replies[keys[order]]["reply"]
        scores = parse_scores(reply)
        if scores is None:
            unparsed.append({"id": item.id, "set": item.set, "order": order, "reply": reply})
            verdict[f"scores_{order}"], verdict[order] = None, None
            continue
        a, b = scores if order == "ab" else scores[::-1]
        verdict[f"scores_{order}"], verdict[order] = list(scores), judge_stats.order_verdict(a, b)
    verdict["verdict"] = judge_stats.combine(verdict["ab"], verdict["ba"])
    return verdict


def _result(items, answers_a, answers_b, keys, replies, bootstrap, seed, judge, requests) -> JudgeResult:
    unparsed: list[dict] = []
    verdicts = [_verdict(item, k, replies, unparsed) for item, k in zip(items, keys)]
    pooled = judge_stats.summarize(verdicts, bootstrap, seed)
    per_set = {}
    for name in dict.fromkeys(item.set for item in items if item.set):
        idx = [i for i, item in enumerate(items) if item.set == name]
        per_set[name] = {**judge_stats.summarize([verdicts[i] for i in idx], bootstrap, seed),
                         "lengths": {"a": length_stats([answers_a[i] for i in idx]),
                                     "b": length_stats([answers_b[i] for i in idx])}}
    tokens = {k: sum(r["usage"].get(k, 0) for r in replies.values())
              for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    return JudgeResult(
        win=pooled["win"], tie=pooled["tie"], lose=pooled["lose"], unparsed=pooled["unparsed"],
        winning_score=pooled["winning_score"], win_rate=pooled["win_rate"], ci95=pooled["ci95"],
        flip_rate=pooled["flip_rate"], unparsed_replies=unparsed, per_set=per_set,
        lengths={"a": length_stats(list(answers_a)), "b": length_stats(list(answers_b))},
        by_longer=judge_stats.by_longer_side(verdicts, answers_a, answers_b, bootstrap, seed), tokens=tokens,
        requests=requests, verdicts=verdicts, judge=judge)
