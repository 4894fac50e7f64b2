"""``judge_pairwise``: the judging of A's answers against B's, from the
questions and answers to the figures (see the package's docstring).
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Sequence
from typing import Any, overload

from absl import logging

from lpjax.evaluation.judge import stats as judge_stats
from lpjax.evaluation.judge.backends import JudgeError, Reply, Request, make_backend
from lpjax.evaluation.judge.cache import RequestCache, request_key
from lpjax.evaluation.judge.protocol import PROMPT_VERSION, messages, parse_scores
from lpjax.evaluation.judge.settings import JudgeSettings
from lpjax.evaluation.testsets import TestItem
from lpjax.evaluation.textstats import length_stats

__all__ = ["JudgeError", "JudgeResult", "JudgeSettings", "judge_pairwise"]

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


@overload
def judge_pairwise(prompts: Sequence[str | dict | TestItem], answers_a: Sequence[str], answers_b: Sequence[str],
                   workdir: str, /, settings: JudgeSettings | None = None, *, client: Any = None,
                   mesh: Any = None, **fields: Any) -> JudgeResult: ...


@overload
def judge_pairwise(base_url: str, model: str, prompts: Sequence[str | dict | TestItem], answers_a: Sequence[str],
                   answers_b: Sequence[str], workdir: str, /, *, client: Any = None, mesh: Any = None,
                   **fields: Any) -> JudgeResult: ...


def judge_pairwise(*args: Any, settings: JudgeSettings | None = None, client: Any = None, mesh: Any = None,
                   **fields: Any) -> JudgeResult:
    """Judge answers_a against answers_b on every prompt, in both orders.

    Two call forms, told apart by the number of positional arguments:

        judge_pairwise(prompts, answers_a, answers_b, workdir, settings)
        judge_pairwise(base_url, model, prompts, answers_a, answers_b, workdir, **fields)

    The first takes a JudgeSettings (positionally or as ``settings=``;
    JudgeSettings() when omitted, as with ``client``); the second builds
    one from base_url, model and keyword fields of JudgeSettings, e.g.
    ``api_key_env="OPENAI_API_KEY"``. In either form, keyword fields
    override the settings' (``judge_pairwise(p, a, b, w, s, bootstrap=0)``).

    base_url/model: an OpenAI-compatible endpoint (``http://host:port/v1``)
    and the model name it serves; with ``backend="lpjax"``, model is a local
    Hugging Face checkpoint directory and base_url is unused. Replies are
    cached under ``workdir/judge_cache``. ``client``: any object with
    ``identity``, ``sampling`` and ``run(requests, done)`` in place of the
    built-in backends. ``mesh``: where the lpjax backend decodes (None: one
    device). Raises JudgeError (one line) when the judge cannot be
    reached or refuses a request; the replies received until then are kept."""
    if len(args) == 6:
        if settings is not None:
            raise TypeError("judge_pairwise: give base_url and model, or settings, not both")
        base_url, model, *args = args
        settings = JudgeSettings(base_url=base_url, model=model)
    elif len(args) == 5:
        if settings is not None:
            raise TypeError("judge_pairwise: settings given twice")
        *args, settings = args
    elif len(args) != 4:
        raise TypeError(f"judge_pairwise takes (prompts, answers_a, answers_b, workdir[, settings]) or (base_url, "
                        f"model, prompts, answers_a, answers_b, workdir), not {len(args)} positional arguments")
    if settings is None:
        settings = JudgeSettings()
    elif not isinstance(settings, JudgeSettings):
        raise TypeError(f"judge_pairwise: settings must be a JudgeSettings, not {type(settings).__name__}")
    if fields:
        settings = settings.replace(**fields)
    prompts, answers_a, answers_b, workdir = args
    return _judge(prompts, answers_a, answers_b, workdir, settings, client, mesh)


def _judge(prompts: Sequence[str | dict | TestItem], answers_a: Sequence[str], answers_b: Sequence[str],
           workdir: str, settings: JudgeSettings, client: Any, mesh: Any) -> JudgeResult:
    items = _items(prompts)
    if not len(items) == len(answers_a) == len(answers_b):
        raise ValueError(f"{len(items)} prompts, {len(answers_a)} answers a, {len(answers_b)} answers b: "
                         "one answer per prompt on each side")
    judge = client or make_backend(settings, mesh)
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
    return _result(items, answers_a, answers_b, keys, replies, settings.bootstrap, settings.seed,
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
