"""Learning-percentage metrics (docs/method.md), pure numpy.

Scores are a [n_epochs + 1, N] array: row 0 is P0 (before training), row i is
the score after epoch i. By default they are perplexities, which is what the
authors' code uses. Callers may pass per-sample mean losses instead, but the
two do not rank alike: LP(i) is invariant to neither exp nor log, and LP_app
divides by P0, so log-space and ppl-space give different orderings. Say which
one you used when you report results.

Besides the LP family (low = hard) there are two single-pass difficulty
scores for comparison, where high = hard:

- ``p0``: the perplexity before training (row 0), the plain "the probe finds
  it hard" baseline.
- ``ifd``: Instruction-Following Difficulty (Li et al. 2023, "From Quantity
  to Quality", arXiv 2308.12032): IFD = PPL(response | instruction) /
  PPL(response alone). The numerator is our ordinary score (response tokens
  after the templated prompt); the denominator needs a second scoring pass
  over the same responses with no prompt (see
  ``lpjax.data.tokenize.encode_response_only_all``). IFD near or above 1
  means the instruction does not help predict the response. ``ifd`` uses row
  0 of both arrays (the untuned probe); ``ifd{i}`` uses row i (after epoch
  i, closer to the paper's briefly "pre-experienced" model).
"""

import re

import numpy as np

# Which end of each metric family is hard. LP: a sample the probe learns
# little of early (low value) is hard. P0 and IFD: high perplexity, or an
# instruction that barely helps, is hard.
HARD_END: dict[str, str] = {"lp": "low", "lp_app": "low", "p0": "high", "ifd": "high"}

_LP_NAME = re.compile(r"^lp([1-9][0-9]*)$")
_IFD_NAME = re.compile(r"^ifd([1-9][0-9]*)?$")
_KNOWN = "'lp{i}' (i >= 1), 'lp_app', 'p0', 'ifd' or 'ifd{i}'"


def _as_scores(scores: np.ndarray) -> np.ndarray:
    """Validate shape [epochs+1, N] and return a float64 view/copy."""
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"scores must be 2-D [epochs+1, N], got shape {arr.shape}")
    return arr


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, with 0 where den == 0 (docs/method.md: LP with P0 == Pn is 0).

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


def p0(scores: np.ndarray) -> np.ndarray:
    """The score before training (row 0); high = hard."""
    return _as_scores(scores)[0].copy()


def ifd(ppl_with_prompt: np.ndarray, ppl_response_only: np.ndarray) -> np.ndarray:
    """IFD = PPL(response | instruction) / PPL(response alone), elementwise; high = hard.

    Both are perplexities of the same response tokens (EOS included), the
    first after the templated prompt, the second after only BOS (or nothing,
    for a tokenizer without one). A zero denominator (not a perplexity) gives
    0 instead of a warning. Pass perplexities, not losses: the ratio of
    perplexities is exp of the loss *difference*, so on losses use
    ``np.exp(loss_with - loss_alone)`` instead.
    """
    num = np.asarray(ppl_with_prompt, dtype=np.float64)
    den = np.asarray(ppl_response_only, dtype=np.float64)
    if num.shape != den.shape:
        raise ValueError(f"ifd needs arrays of one shape, got {num.shape} and {den.shape}")
    return _safe_ratio(num, den)


def _family(name: str) -> str:
    if name in ("lp_app", "p0"):
        return name
    if _LP_NAME.match(name):
        return "lp"
    if _IFD_NAME.match(name):
        return "ifd"
    raise ValueError(f"unknown metric {name!r}; expected {_KNOWN}")


def needs_response_only(name: str) -> bool:
    """Whether metric `name` needs the second (response-alone) scoring pass."""
    return _family(name) == "ifd"


def compute_metric(name: str, scores: np.ndarray, response_only: np.ndarray | None = None) -> np.ndarray:
    """Dispatch by name: 'lp{i}', 'lp_app', 'p0', 'ifd' or 'ifd{i}'.

    `scores` is [epochs+1, N] from the ordinary (templated) scoring pass.
    `response_only` is the same shape from the response-alone pass, required
    by the IFD metrics and ignored by the others.
    """
    family = _family(name)
    if family == "ifd":
        if response_only is None:
            raise ValueError(f"metric {name!r} needs response_only scores (a pass without the instruction)")
        arr, alone = _as_scores(scores), _as_scores(response_only)
        if arr.shape[1] != alone.shape[1]:
            raise ValueError(f"{name}: scores have {arr.shape[1]} samples, response_only {alone.shape[1]}")
        row = int(name[3:] or 0)
        if row >= min(arr.shape[0], alone.shape[0]):
            raise ValueError(f"{name} needs row {row}, but scores have {arr.shape[0]} and "
                             f"response_only {alone.shape[0]} row(s)")
        return ifd(arr[row], alone[row])
    if family == "lp_app":
        return lp_app(scores)
    if family == "p0":
        return p0(scores)
    return lp(scores, int(_LP_NAME.match(name).group(1)))


def epochs_needed(name: str) -> int:
    """The last probe epoch metric `name` reads (0: none after training)."""
    if name == "lp_app":
        return 1
    match = re.fullmatch(r"(?:lp|ifd)(\d+)", name)
    return int(match.group(1)) if match else 0


def hard_is_low(name: str) -> bool:
    """Whether low values of metric `name` mark the hard samples."""
    return HARD_END[_family(name)] == "low"
