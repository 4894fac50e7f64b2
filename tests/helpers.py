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
