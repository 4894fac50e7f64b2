"""Small builders shared by tests: tiny models and synthetic examples."""
from __future__ import annotations

import numpy as np

from lpjax.data.tokenize import Example
from lpjax.models.llama import LlamaConfig
from lpjax.models.registry import build_model


def tiny_model(vocab: int = 61, seed: int = 0, **overrides):
    cfg = dict(vocab_size=vocab, hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4, num_kv_heads=2)
    cfg.update(overrides)
    return build_model(LlamaConfig(**cfg), seed)


def random_examples(n: int, vocab: int, seed: int = 0, max_len: int = 40) -> list[Example]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        length = int(rng.integers(3, max_len))
        prompt_len = int(rng.integers(1, length + 1))  # includes prompts with no response token
        out.append(Example(ids=rng.integers(1, vocab, length).astype(np.int32), prompt_len=prompt_len))
    return out


def prefixed_examples(n: int, vocab: int, seed: int = 0) -> list[Example]:
    """Examples of which two thirds start with one of two fixed 10- and
    14-token preambles (like the Alpaca template's), so find_prefixes finds
    two shared prefixes; the rest share none."""
    rng = np.random.default_rng(seed)
    preambles = [rng.integers(1, vocab, 10), rng.integers(1, vocab, 14)]
    out = []
    for i in range(n):
        pre = preambles[i % 2] if i % 3 else np.zeros(0, np.int64)
        body = rng.integers(1, vocab, int(rng.integers(4, 30)))
        out.append(Example(ids=np.concatenate([pre, body]).astype(np.int32),
                           prompt_len=len(pre) + int(rng.integers(1, 4))))
    return out
