"""Everything ``judge_pairwise`` needs to know about the judge, in one frozen
dataclass: which backend and model, where it is served and with which key,
how it samples, how hard to try, and how the figures are resampled.

Built by hand (``JudgeSettings(base_url=..., model=...)``) or from the
config's ``evaluate.judge`` section (``JudgeSettings.from_config``, what
the judge stage does).
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class JudgeSettings:
    """The judge and how to ask it.

    Only ``backend``, ``model`` (for lpjax, the checkpoint's content) and the
    sampling settings (``temperature``, ``max_tokens``, and ``seed`` when
    sampling) enter the cache key of a request; where the judge is served,
    its key, concurrency, timeout, retries and the bootstrap do not, as they
    cannot change a reply."""

    backend: str = "openai"  # openai (any chat-completions endpoint) | lpjax (a local checkpoint)
    base_url: str = ""  # openai: e.g. http://127.0.0.1:8080/v1; unused by lpjax
    model: str = ""  # openai: the model name sent; lpjax: a Hugging Face checkpoint directory
    api_key: str | None = dataclasses.field(default=None, repr=False)  # the key itself (never printed)
    api_key_env: str = ""  # else the environment variable holding it; "" = send none
    temperature: float = 0.0
    max_tokens: int = 1024  # of the judge's reply
    concurrency: int = 4  # openai: requests in flight at once
    timeout: float = 120.0  # openai: seconds per request
    max_retries: int = 5  # openai: per request, on 429/5xx/timeouts/connection errors
    backoff: float = 1.0  # openai: first retry's delay in seconds, doubled each retry
    bootstrap: int = 2000  # resamples of the winning score's 95 % interval (0: none)
    seed: int = 0  # of the bootstrap, and of the lpjax judge's sampling

    @classmethod
    def from_config(cls, judge_cfg, *, seed: int = 0) -> JudgeSettings:
        """The settings of the config section ``evaluate.judge``
        (lpjax.config.JudgeConfig); ``seed`` is the run's (``cfg.seed``).
        Reads exactly the fields the judge stage declares."""
        j = judge_cfg
        return cls(backend=j.backend, base_url=j.base_url, model=j.model, api_key_env=j.api_key_env,
                   temperature=j.temperature, max_tokens=j.max_tokens, concurrency=j.concurrency,
                   timeout=j.timeout, max_retries=j.max_retries, bootstrap=j.bootstrap, seed=seed)

    def replace(self, **changes) -> JudgeSettings:
        """A copy with some fields changed (TypeError naming an unknown one)."""
        return dataclasses.replace(self, **changes)
