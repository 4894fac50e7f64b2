"""Length statistics of answers (judges favour long answers, so every
comparison reports them per side)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def length_stats(texts: Sequence[str]) -> dict:
    """Words (whitespace-separated) and characters per answer, and how many are empty."""
    words = np.array([len(t.split()) for t in texts], float)
    chars = np.array([len(t) for t in texts], float)
    if not len(texts):
        return {"num": 0, "mean_words": 0.0, "median_words": 0.0, "max_words": 0, "mean_chars": 0.0, "empty": 0}
    return {"num": len(texts), "mean_words": float(words.mean()), "median_words": float(np.median(words)),
            "max_words": int(words.max()), "mean_chars": float(chars.mean()),
            "empty": int(sum(not t.strip() for t in texts))}
