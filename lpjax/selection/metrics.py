"""Learning-percentage metrics (DESIGN.md §1), pure numpy.

Scores are a [n_epochs + 1, N] array: row 0 is P0 (before training), row i is
the score after epoch i. By default they are perplexities, which is what the
authors' code uses. Callers may pass per-sample mean losses instead, but the
two do not rank alike: LP(i) is invariant to neither exp nor log, and LP_app
divides by P0, so log-space and ppl-space give different orderings. Say which
one you used when you report results.
"""

import re

import numpy as np

# Only LP-family metrics exist so far; for all of them a sample the probe
# learns little of early (low value) is hard.
HARD_END: dict[str, str] = {"lp": "low", "lp_app": "low"}

_LP_NAME = re.compile(r"^lp([1-9][0-9]*)$")


def _as_scores(scores: np.ndarray) -> np.ndarray:
    """Validate shape [epochs+1, N] and return a float64 view/copy."""
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"scores must be 2-D [epochs+1, N], got shape {arr.shape}")
    return arr


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, with 0 where den == 0 (DESIGN: LP with P0 == Pn is 0).

    np.divide with `where=` never evaluates the zero-denominator lanes, so no
    RuntimeWarning is raised and no inf/nan leaks into a ranking.
    """
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def lp(scores: np.ndarray, epoch: int) -> np.ndarray:
    """LP(epoch) = (P(epoch-1) - P(epoch)) / (P0 - Pn), n = last row.

    The share of the total improvement that happened during `epoch`. Where
    P0 == Pn the total is zero and the result is defined as 0 for every epoch.
    """
    arr = _as_scores(scores)
    n_epochs = arr.shape[0] - 1
    if not 1 <= epoch <= n_epochs:
        raise ValueError(
            f"lp{epoch} needs epochs 0..{epoch}, but scores have {arr.shape[0]} rows "
            f"(epochs 0..{n_epochs})"
        )
    return _safe_ratio(arr[epoch - 1] - arr[epoch], arr[0] - arr[-1])


def lp_app(scores: np.ndarray) -> np.ndarray:
    """LP_app = (P0 - P1) / P0: needs only the score after epoch 1.

    Rows after the second are ignored, so the scores may come from a 1-epoch
    run or from epoch 1 of a longer run. P0 == 0 (impossible for a perplexity,
    which is >= 1) gives 0 rather than a division warning.
    """
    arr = _as_scores(scores)
    if arr.shape[0] < 2:
        raise ValueError(f"lp_app needs epochs 0 and 1, but scores have {arr.shape[0]} row(s)")
    return _safe_ratio(arr[0] - arr[1], arr[0])


def compute_metric(name: str, scores: np.ndarray) -> np.ndarray:
    """Dispatch by name: 'lp1', 'lp2', ... ('lp{i}') or 'lp_app'."""
    if name == "lp_app":
        return lp_app(scores)
    match = _LP_NAME.match(name)
    if match is None:
        raise ValueError(f"unknown metric {name!r}; expected 'lp_app' or 'lp{{i}}' with i >= 1")
    return lp(scores, int(match.group(1)))


def hard_is_low(name: str) -> bool:
    """Whether low values of metric `name` mark the hard samples."""
    family = "lp_app" if name == "lp_app" else ("lp" if _LP_NAME.match(name) else None)
    if family is None:
        raise ValueError(f"unknown metric {name!r}; expected 'lp_app' or 'lp{{i}}' with i >= 1")
    return HARD_END[family] == "low"
