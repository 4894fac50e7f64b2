"""Where judge replies come from: any OpenAI-compatible chat-completions
endpoint (stdlib HTTP, bounded retries, a limited number of requests in
flight), or a local lpjax checkpoint generating greedily.

A backend's ``run(requests, done)`` answers each request with a ``Reply``
through ``done`` as soon as it has one (the caller caches it there); a
request that cannot be answered stops the run with a one-line JudgeError
after the requests already in flight have finished. ``make_backend`` builds
the one a JudgeSettings names.
"""
from __future__ import annotations

import dataclasses
import email.utils
import http.client
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lpjax.errors import UserError
from lpjax.evaluation.judge.settings import JudgeSettings


class JudgeError(UserError, RuntimeError):
    """A judge that cannot be used (unreachable, refusing, misconfigured); one
    line, under the config section that names the judge."""

    def __init__(self, message: str, where: str = "evaluate.judge"):
        super().__init__(where, message)


@dataclasses.dataclass(frozen=True)
class Request:
    key: str
    messages: list[dict[str, str]]


@dataclasses.dataclass(frozen=True)
class Reply:
    text: str
    usage: dict[str, int]


Done = Callable[[Request, Reply], None]

# Worth another try: rate limits, server errors, and anything that broke off.
RETRY_STATUS = frozenset({408, 429}) | frozenset(range(500, 600))


class _Retry(Exception):
    def __init__(self, reason: str, after: float | None = None):
        super().__init__(reason)
        self.after = after


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class OpenAIBackend:
    """POST {base_url}/chat/completions with a system and a user message.

    ``identity`` (the model name; not the URL, so a cache outlives a port)
    and ``sampling`` enter every request's cache key."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, temperature: float = 0.0,
                 max_tokens: int = 1024, timeout: float = 120.0, max_retries: int = 5, concurrency: int = 4,
                 backoff: float = 1.0, max_backoff: float = 60.0):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key = model, api_key
        self.temperature, self.max_tokens = temperature, max_tokens
        self.timeout, self.max_retries, self.concurrency = timeout, max_retries, concurrency
        self.backoff, self.max_backoff = backoff, max_backoff
        self.identity = f"openai:{model}"
        self.sampling = {"temperature": temperature, "max_tokens": max_tokens}

    def _post(self, messages: list[dict]) -> Reply:
        body = json.dumps({"model": self.model, "messages": messages, "temperature": self.temperature,
                           "max_tokens": self.max_tokens}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, body, headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as e:
            detail = _one_line(e.read().decode("utf-8", "replace"))
            if e.code in RETRY_STATUS:
                raise _Retry(f"HTTP {e.code} {detail}", _retry_after(e.headers.get("Retry-After"))) from None
            raise JudgeError(f"judge {self.url}: HTTP {e.code}: {detail or e.reason}") from None
        except (OSError, http.client.HTTPException) as e:  # timeouts, refused or dropped connections
            reason = getattr(e, "reason", e)
            raise _Retry(f"{type(reason).__name__}: {reason}") from None
        try:
            data = json.loads(payload)
            text = data["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Retry(f"not a chat completion: {_one_line(payload.decode('utf-8', 'replace'), 80)}") from None
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return Reply(str(text), {k: int(usage.get(k) or 0) for k in ("prompt_tokens", "completion_tokens",
                                                                      "total_tokens")})

    def complete(self, messages: list[dict]) -> Reply:
        """One reply, retried with exponential backoff and jitter (at least
        what Retry-After asks, up to max_backoff) on 429, 5xx, timeouts and
        connection errors; other HTTP errors fail at once."""
        for attempt in range(self.max_retries + 1):
            try:
                return self._post(messages)
            except _Retry as e:
                last = e
                if attempt == self.max_retries:
                    break
                delay = min(self.max_backoff, self.backoff * 2 ** attempt)
                delay = random.uniform(delay / 2, delay)
                if e.after is not None:
                    delay = max(delay, min(e.after, self.max_backoff))
                time.sleep(delay)
        raise JudgeError(f"judge {self.url}: no reply after {self.max_retries + 1} attempts: {last}")

    def run(self, requests: Sequence[Request], done: Done) -> None:
        stop = threading.Event()

        def one(request: Request) -> None:
            if stop.is_set():
                return
            try:
                done(request, self.complete(request.messages))
            except BaseException:
                stop.set()  # the rest are not sent; in-flight ones finish and are kept
                raise

        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="judge") as pool:
            futures = [pool.submit(one, r) for r in requests]
        for f in futures:
            if f.exception() is not None:
                raise f.exception()


class LpjaxBackend:
    """A local Hugging Face checkpoint directory as the judge, loaded into
    lpjax and decoding in batches (greedy at temperature 0) through
    lpjax/evaluation/generate.py ``decode``, on ``mesh`` when given (the
    weights placed once by the sharding rules; a batch is rounded up to a
    multiple of the mesh's data x fsdp). The prompt is the tokenizer's chat
    template when it has one, else the system and user messages joined by
    blank lines."""

    def __init__(self, checkpoint: str, *, temperature: float = 0.0, max_tokens: int = 1024, batch_size: int = 8,
                 seed: int = 0, mesh: Any = None):
        from flax import nnx

        from lpjax import sharding
        from lpjax.data.tokenizer import load_tokenizer
        from lpjax.models.hf import load_hf
        from lpjax.workdir import file_hash

        self.graphdef, self.params = nnx.split(load_hf(checkpoint)[0])
        if mesh is not None:
            self.params = sharding.shard_params(self.params, mesh)
            split = sharding.data_parallel_size(mesh)
            batch_size = -(-batch_size // split) * split
        self.tok = load_tokenizer(checkpoint)
        # The weights, not the path, identify the judge in the cache.
        self.identity = "lpjax:" + file_hash(checkpoint)[:16]
        self.temperature, self.max_tokens, self.batch_size, self.seed = temperature, max_tokens, batch_size, seed
        self.mesh = mesh
        self.sampling = {"temperature": temperature, "max_tokens": max_tokens, "seed": seed if temperature else None}

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        if getattr(self.tok, "chat_template", None):
            try:
                import jinja2  # noqa: F401  (transformers renders chat templates with it)
            except ImportError:
                raise JudgeError("the judge checkpoint's tokenizer has a chat template, which needs jinja2: "
                                 "pip install jinja2") from None
            text = self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return self.tok(text, add_special_tokens=False)["input_ids"]
        text = "\n\n".join(m["content"] for m in messages)
        return self.tok(text)["input_ids"]

    def run(self, requests: Sequence[Request], done: Done) -> None:
        from lpjax.evaluation.generate import decode

        for start in range(0, len(requests), self.batch_size):
            chunk = requests[start : start + self.batch_size]
            prompts = [self.prompt_ids(r.messages) for r in chunk]
            outputs = decode(self.graphdef, self.params, prompts, self.max_tokens, self.tok.eos_token_id,
                             temperature=self.temperature, seed=self.seed, batch_size=self.batch_size,
                             pad_id=self.tok.pad_token_id or 0, mesh=self.mesh)
            for r, p, o in zip(chunk, prompts, outputs):
                usage = {"prompt_tokens": len(p), "completion_tokens": len(o), "total_tokens": len(p) + len(o)}
                done(r, Reply(self.tok.decode(o, skip_special_tokens=True), usage))


def make_backend(settings: JudgeSettings, mesh: Any = None) -> OpenAIBackend | LpjaxBackend:
    """The backend ``settings.backend`` names. The openai backend's key is
    ``settings.api_key``, else the environment variable ``api_key_env``
    (JudgeError when it is named but not set), else none. ``mesh``: where
    the lpjax backend decodes (None: one device)."""
    s = settings
    if s.backend == "openai":
        api_key = s.api_key
        if api_key is None and s.api_key_env:
            api_key = os.environ.get(s.api_key_env)
            if not api_key:
                raise JudgeError(f"judge API key: environment variable {s.api_key_env} is not set")
        return OpenAIBackend(s.base_url, s.model, api_key, temperature=s.temperature, max_tokens=s.max_tokens,
                             timeout=s.timeout, max_retries=s.max_retries, concurrency=s.concurrency,
                             backoff=s.backoff)
    if s.backend == "lpjax":
        return LpjaxBackend(s.model, temperature=s.temperature, max_tokens=s.max_tokens, seed=s.seed, mesh=mesh)
    raise ValueError(f"unknown judge backend {s.backend!r}; expected openai or lpjax")
