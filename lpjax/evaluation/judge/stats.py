"""From judge scores to verdicts and figures: the order-swap rule, the
winning score, its paired bootstrap interval and the position-flip rate.

Every question is judged twice, answers in both orders. Its verdict for
side A: win if A wins both orders, or wins one and ties the other; lose
the mirror; tie otherwise (a win and a loss, or two ties). This is the rule
of AlpaGasus and Cherry_LLM. A question with an unparsed reply in either
order has no verdict: it is listed and counted, never scored as a tie.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

WIN, TIE, LOSE = "win", "tie", "lose"
OUTCOME = {WIN: 1, TIE: 0, LOSE: -1}


def order_verdict(score_a: float, score_b: float) -> str:
    """A's verdict in one order, from the two answers' scores."""
    return WIN if score_a > score_b else LOSE if score_a < score_b else TIE


def combine(ab: str | None, ba: str | None) -> str | None:
    """A's verdict over both orders (None when either order is unparsed)."""
    if ab is None or ba is None:
        return None
    total = OUTCOME[ab] + OUTCOME[ba]
    return WIN if total > 0 else LOSE if total < 0 else TIE


def winning_score(win: int, tie: int, lose: int) -> float | None:
    """(W - L) / (W + T + L) + 1: 2 is A winning every question, 0 losing
    every one, 1 even (the literature's figure); None with no verdicts."""
    n = win + tie + lose
    return None if n == 0 else (win - lose) / n + 1


def bootstrap_interval(outcomes: Sequence[int], resamples: int, seed: int,
                       level: float = 0.95) -> tuple[float, float] | None:
    """The paired percentile bootstrap interval of the winning score:
    questions (each with both its answers and both orders) are resampled
    with replacement. outcomes: +1 win, 0 tie, -1 lose per question."""
    values = np.asarray(outcomes, float)
    if resamples <= 0 or not len(values):
        return None
    rng = np.random.default_rng(seed)
    scores = np.empty(resamples)
    # Chunks keep the index matrix small for large sets.
    step = max(1, 4_000_000 // len(values))
    for start in range(0, resamples, step):
        n = min(step, resamples - start)
        scores[start : start + n] = values[rng.integers(0, len(values), (n, len(values)))].mean(axis=1) + 1
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(scores, [tail, 100 - tail])
    return float(low), float(high)


def summarize(verdicts: Sequence[dict], resamples: int, seed: int) -> dict:
    """Counts, winning score, win rate, interval and flip rate of a group of
    questions (each a dict with ``ab``, ``ba`` and ``verdict``)."""
    decided = [v for v in verdicts if v["verdict"] is not None]
    counts = {k: sum(v["verdict"] == k for v in decided) for k in (WIN, TIE, LOSE)}
    n = len(decided)
    flips = sum(v["ab"] != v["ba"] for v in decided)
    return {
        "questions": len(verdicts), **counts, "unparsed": len(verdicts) - n,
        "winning_score": winning_score(counts[WIN], counts[TIE], counts[LOSE]),
        "win_rate": counts[WIN] / n if n else None,
        "ci95": bootstrap_interval([OUTCOME[v["verdict"]] for v in decided], resamples, seed),
        # How often swapping the order changed A's verdict: the judge's position bias.
        "flip_rate": flips / n if n else None,
    }


def by_longer_side(verdicts: Sequence[dict], answers_a: Sequence[str], answers_b: Sequence[str], resamples: int,
                   seed: int) -> dict[str, dict]:
    """``summarize`` of the questions where A answered longer, where B did,
    and where both answered as long (in words). Judges favour long answers:
    a selection whose target wins only where it answered longer may have
    learnt length, not quality (Zhao et al. 2024, "Long Is More for
    Alignment")."""
    groups: dict[str, list[dict]] = {"a longer": [], "b longer": [], "same length": []}
    for v, a, b in zip(verdicts, answers_a, answers_b, strict=True):
        na, nb = len(a.split()), len(b.split())
        groups["a longer" if na > nb else "b longer" if nb > na else "same length"].append(v)
    return {name: summarize(group, resamples, seed) for name, group in groups.items()}
