"""What is a selection made of? An audit of a hardness ranking and its subset.

A "hard" sample is one the probe learns little from; that is not the same as a
sample worth training on. Three findings from the field motivate the checks:

- on the authors' released Alpaca perplexities, LP_app's ranking is largely a
  ranking by response length, and "Long Is More for Alignment" (Zhao et al.
  2024) found that taking the longest responses beats most selection methods:
  a hardness metric may be a length filter in disguise;
- dataset cartography (Swayamdipta et al. 2020) and RHO-LOSS (Mindermann et
  al. 2022) found that "hard by loss" attracts mislabelled and unlearnable
  samples; on Alpaca the very hardest are empty or markup-laden responses;
- two probes may agree on hardness only because both track length.

So the audit measures the ranking's correlation with length, the overlap with
the longest responses, the token budget the subset really holds, quality flags
(empty, duplicated, cut off, non-ASCII, markup) in the hardest tail, the
selection and the pool, group coverage, how flat the metric is, and the
hardness transfer within length bins; ``findings`` turns that into plain
sentences a user can act on. Everything is pure numpy/scipy; ``audit``
returns a JSON-able dict, ``audit_markdown`` a report section and
``plot_hardness_map`` a P0-vs-metric scatter (matplotlib object API, written
atomically).
"""
from __future__ import annotations

import math
import os
import re
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lpjax import atomic, markdown
from lpjax.data.formats import FIELDS
from lpjax.selection.select import select_hardest
from lpjax.selection.transfer import rank_correlation

# ---------------------------------------------------------------------------
# Thresholds

# Fewer words than this and a missing full stop is normal (a label, a number, a short list).
TRUNCATED_MIN_WORDS = 20
# A response ending on one of these (or a letter or digit) stopped mid-sentence.
TRUNCATED_END_CHARS = frozenset(",:;-")
# Above this share of non-ASCII characters the response is mostly another script (or mojibake).
NON_ASCII_SHARE = 0.20
# Above this share of markup symbols a response is mostly code, tables or formatting, not prose.
MARKUP_SYMBOL_SHARE = 0.05
# The symbols counted for MARKUP_SYMBOL_SHARE: HTML, Markdown, LaTeX and code punctuation.
MARKUP_SYMBOLS = frozenset("<>{}[]#*`|=\\_~^$@")
# An HTML/XML tag: "<" or "</", a tag name, then attributes without another "<".
HTML_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
# A Markdown code fence.
CODE_FENCE = "```"

# Findings: a |Spearman rho| with response length above this makes a ranking mostly a length ranking.
LENGTH_RHO = 0.5
# Findings: a selection sharing more than this with the longest records is close to the `longest` baseline.
LONGEST_OVERLAP = 0.5
# Findings: a selection outside this token ratio to random trains on a different budget than `random`.
TOKEN_RATIO_RANGE = (0.67, 1.5)
# Findings: a flag this many times more frequent in the hardest tail than in the pool is attracted by hardness.
TOP_FLAG_FACTOR = 2.0
# Findings: ... and for the selection (diluted by its easier part, hence a lower factor).
SELECTION_FLAG_FACTOR = 1.5
# Findings: a flag under this absolute share is too rare to act on.
FLAG_MIN_SHARE = 0.01
# Findings: a selection with this many times the pool's noisy share is drawn to wrong answers.
NOISY_FACTOR = 1.5
# Findings: an IQR under this share of the median means the ranking rests on tiny differences.
RELATIVE_IQR = 1e-2
# Findings: a global tau this much above the mean within-length tau owes that much to length.
TRANSFER_LENGTH_GAP = 0.1

FLAGS = ("empty", "duplicated", "truncated", "non_ascii", "markup")
FLAG_WORDS = {
    "empty": "empty responses",
    "duplicated": "exact duplicates",
    "truncated": "cut-off responses",
    "non_ascii": "mostly non-ASCII responses",
    "markup": "markup-heavy responses",
}


# ---------------------------------------------------------------------------
# Small helpers


def _hardness(metric: np.ndarray, hard_is_low: bool) -> np.ndarray:
    """The metric oriented so that higher = harder, whatever the metric's convention."""
    values = np.asarray(metric, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"metric must be 1-D, got shape {values.shape}")
    return -values if hard_is_low else values


def _indices(selection: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    """Distinct int64 indices in range(n): a selection is a set of records."""
    idx = np.unique(np.asarray(selection, dtype=np.int64).reshape(-1))
    if idx.size and (idx[0] < 0 or idx[-1] >= n):
        raise ValueError(f"selection indices must lie in [0, {n}), got {idx[0]}..{idx[-1]}")
    return idx


def _quiet_rank(a: np.ndarray, b: np.ndarray, method: str) -> float:
    """A rank correlation that is NaN (not a warning) for fewer than 2 records or constant input."""
    if a.size < 2:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rank_correlation(a, b, method)


def _plain(obj: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays to Python, NaN and infinities to None (strict JSON)."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def _num(x: Any) -> float:
    """A float from a result value; None (a NaN made JSON-safe) back to NaN."""
    return math.nan if x is None else float(x)


def _pct(share: float) -> str:
    """A share as a short percentage: 0.4 -> '40 %', 0.045 -> '4.5 %', 0.0012 -> '0.12 %'."""
    value = 100 * _num(share)
    if not math.isfinite(value):
        return "n/a"
    if value == 0 or value >= 10:
        return f"{value:.0f} %"
    return f"{value:.2g} %"


# ---------------------------------------------------------------------------
# Lengths


def response_chars(records: Sequence[Mapping]) -> np.ndarray:
    """Characters of each record's response (`output`): the length a length filter would use."""
    return np.array([len(str(r.get("output", ""))) for r in records], dtype=np.int64)


def prompt_chars(records: Sequence[Mapping]) -> np.ndarray:
    """Characters of each record's instruction plus input: the prompt side of the length."""
    return np.array([len(str(r.get("instruction", ""))) + len(str(r.get("input", ""))) for r in records],
                    dtype=np.int64)


def length_correlations(metric: np.ndarray, hard_is_low: bool,
                        lengths: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Spearman rho between hardness (higher = harder) and each named length vector.

    A positive rho means "harder = longer"; near +-1 the metric ranks by
    length and selecting by it is close to selecting by length.
    """
    hardness = _hardness(metric, hard_is_low)
    out = {}
    for name, length in lengths.items():
        values = np.asarray(length, dtype=np.float64)
        if values.shape != hardness.shape:
            raise ValueError(f"length {name!r} has shape {values.shape}, the metric {hardness.shape}")
        out[name] = _quiet_rank(hardness, values, "spearman")
    return out


def longest_overlap(selection: Sequence[int] | np.ndarray, lengths: np.ndarray) -> float:
    """|S ∩ L| / |S|, L the |S| records with the largest `lengths` (ties: lower index first).

    The share of the selection the `longest` baseline of the same count
    would take too; near 1 the selection is a length filter.
    """
    values = np.asarray(lengths, dtype=np.float64)
    idx = _indices(selection, values.shape[0])
    if idx.size == 0:
        raise ValueError("longest overlap of an empty selection is undefined")
    # A stable sort of the negated lengths keeps equal lengths in index order.
    longest = np.argsort(-values, kind="stable")[: idx.size]
    return float(np.intersect1d(idx, longest).size / idx.size)


def token_share(selection: Sequence[int] | np.ndarray, tokens: np.ndarray,
                random_indices: Sequence[int] | np.ndarray | None = None) -> dict[str, float]:
    """The selection's token budget against a random subset of the same count.

    Training cost and, per "Long Is More", much of the benefit scale with
    tokens rather than records: a subset with twice the tokens of `random`
    is not a fair comparison with it. `random_tokens` is the tokens of
    `random_indices` (an actual random subset of the same count) when given,
    else the expectation count * pool mean.
    """
    values = np.asarray(tokens, dtype=np.float64)
    idx = _indices(selection, values.shape[0])
    chosen = float(values[idx].sum())
    pool_mean = float(values.mean()) if values.size else math.nan
    if random_indices is None:
        random_total = idx.size * pool_mean
    else:
        other = _indices(random_indices, values.shape[0])
        if other.size != idx.size:
            raise ValueError(f"random_indices hold {other.size} records, the selection {idx.size}")
        random_total = float(values[other].sum())
    return {
        "selection_tokens": chosen,
        "random_tokens": float(random_total),
        "ratio": chosen / random_total if random_total > 0 else math.nan,
        "selection_mean": chosen / idx.size if idx.size else math.nan,
        "pool_mean": pool_mean,
    }


# ---------------------------------------------------------------------------
# Quality flags


def _non_space(text: str) -> str:
    return "".join(text.split())


def _is_truncated(text: str) -> bool:
    """Long enough to need an ending, and it ends mid-sentence (Alpaca's generator hit its token limit)."""
    stripped = text.rstrip()
    if len(stripped.split()) < TRUNCATED_MIN_WORDS:
        return False
    last = stripped[-1]
    return last.isalpha() or last.isdigit() or last in TRUNCATED_END_CHARS


def _is_non_ascii(text: str) -> bool:
    chars = _non_space(text)
    return bool(chars) and sum(ord(c) > 127 for c in chars) > NON_ASCII_SHARE * len(chars)


def _is_markup(text: str) -> bool:
    if CODE_FENCE in text or HTML_TAG.search(text):
        return True
    chars = _non_space(text)
    return bool(chars) and sum(c in MARKUP_SYMBOLS for c in chars) > MARKUP_SYMBOL_SHARE * len(chars)


def record_key(record: Mapping[str, Any]) -> tuple[str, str, str]:
    """What makes two records exact duplicates: instruction, input and output (metadata ignored)."""
    return tuple(str(record.get(f, "")) for f in FIELDS)


def quality_flags(records: Sequence[Mapping], cut: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """One bool array per flag (`FLAGS` order): the kinds of record "hard by loss" tends to attract.

    `empty` (whitespace-only output), `duplicated` (the instruction/input/
    output triple occurs more than once; every copy is flagged), `truncated`
    (a response of at least TRUNCATED_MIN_WORDS words ending mid-sentence, or
    ``cut[i]``: the tokenizer cut it at max_len), `non_ascii` (more than
    NON_ASCII_SHARE of its non-space characters), `markup` (an HTML tag, a
    code fence, or more than MARKUP_SYMBOL_SHARE markup symbols).
    """
    outputs = [str(r.get("output", "")) for r in records]
    counts = Counter(record_key(r) for r in records)
    truncated = np.array([_is_truncated(t) for t in outputs], dtype=bool)
    if cut is not None:
        cut = np.asarray(cut, dtype=bool)
        if cut.shape != truncated.shape:
            raise ValueError(f"cut has shape {cut.shape}, expected {truncated.shape}")
        truncated |= cut
    return {
        "empty": np.array([not t.strip() for t in outputs], dtype=bool),
        "duplicated": np.array([counts[record_key(r)] > 1 for r in records], dtype=bool),
        "truncated": truncated,
        "non_ascii": np.array([_is_non_ascii(t) for t in outputs], dtype=bool),
        "markup": np.array([_is_markup(t) for t in outputs], dtype=bool),
    }


def flag_shares(flags: Mapping[str, np.ndarray],
                groups: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """{group: {flag: share of the group's records carrying it}}; an empty group gives 0.0.

    Comparing the hardest tail and the selection with the pool shows which
    flags hardness attracts.
    """
    out = {}
    for group, members in groups.items():
        idx = np.asarray(members, dtype=np.int64).reshape(-1)
        out[group] = {name: float(np.asarray(flag, dtype=bool)[idx].mean()) if idx.size else 0.0
                      for name, flag in flags.items()}
    return out


# ---------------------------------------------------------------------------
# Transfer within length, groups, spread


def _length_bins(lengths: np.ndarray, bins: int) -> list[np.ndarray]:
    """`bins` equal-count bins by rank of length (ties by index): N//bins or N//bins + 1 records each."""
    order = np.argsort(np.asarray(lengths, dtype=np.float64), kind="stable")
    return [b for b in np.array_split(order, max(1, min(bins, order.size))) if b.size]


def transfer_within_length(metric_a: np.ndarray, metric_b: np.ndarray, lengths: np.ndarray,
                           bins: int = 10) -> dict[str, Any]:
    """Kendall tau-b between two metric vectors over all records and within equal-count length bins.

    If both probes track length, they agree globally even when they rank
    records of the same length independently; the within-bin taus measure
    the agreement that is left once length is held (roughly) fixed.
    """
    a, b = np.asarray(metric_a, dtype=np.float64), np.asarray(metric_b, dtype=np.float64)
    length = np.asarray(lengths, dtype=np.float64)
    if not a.shape == b.shape == length.shape or a.ndim != 1:
        raise ValueError(f"metric_a {a.shape}, metric_b {b.shape} and lengths {length.shape} must be equal 1-D")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    rows = [{"low": float(length[idx].min()), "high": float(length[idx].max()), "n": int(idx.size),
             "tau": _quiet_rank(a[idx], b[idx], "kendall")} for idx in _length_bins(length, bins)]
    taus = np.array([r["tau"] for r in rows], dtype=np.float64)
    finite = taus[np.isfinite(taus)]
    return {"global": _quiet_rank(a, b, "kendall"), "bins": rows,
            "mean_within": float(finite.mean()) if finite.size else math.nan}


def group_rates(records: Sequence[Mapping], selection: Sequence[int] | np.ndarray,
                key: str) -> list[dict[str, Any]]:
    """Per value of field `key` (as str, sorted): pool count, selected count and rate.

    Shows whole families of tasks a selection leaves out. Records without
    the field are not counted.
    """
    chosen = set(_indices(selection, len(records)).tolist())
    pool, picked = Counter(), Counter()
    for i, record in enumerate(records):
        if key in record:
            value = str(record[key])
            pool[value] += 1
            picked[value] += i in chosen
    return [{"value": v, "pool": pool[v], "selected": picked[v], "rate": picked[v] / pool[v]}
            for v in sorted(pool)]


def metric_spread(metric: np.ndarray) -> dict[str, float]:
    """Min, max, median, IQR and IQR / |median| of the finite values.

    A tiny relative IQR means half of the ranking rests on differences that
    may be below the noise of a probe run.
    """
    values = np.asarray(metric, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {k: math.nan for k in ("min", "max", "median", "iqr", "relative_iqr")} | {"non_finite": int(values.size)}
    q25, median, q75 = np.percentile(finite, [25, 50, 75])
    iqr = float(q75 - q25)
    return {"min": float(finite.min()), "max": float(finite.max()), "median": float(median), "iqr": iqr,
            "relative_iqr": iqr / max(abs(float(median)), 1e-12), "non_finite": int(values.size - finite.size)}


# ---------------------------------------------------------------------------
# The hardness map


def plot_hardness_map(p0: np.ndarray, metric: np.ndarray, selected_mask: np.ndarray, path: str | os.PathLike,
                      metric_name: str = "", noisy_mask: np.ndarray | None = None, hard_is_low: bool = True) -> str:
    """Scatter of P0 (log x) against the metric, the selection coloured, noisy records as 'x'; PNG.

    Dataset cartography's view for this method: where the selection sits
    among all records, and whether it gathers the deliberately wrong ones.
    Points are small and rasterized so 52K of them render fast; points with
    a non-finite or non-positive P0 or a non-finite metric are left out.
    """
    from matplotlib.figure import Figure

    x, y = np.asarray(p0, dtype=np.float64), np.asarray(metric, dtype=np.float64)
    chosen = np.asarray(selected_mask, dtype=bool)
    noisy = np.zeros_like(chosen) if noisy_mask is None else np.asarray(noisy_mask, dtype=bool)
    if not x.shape == y.shape == chosen.shape == noisy.shape:
        raise ValueError(f"p0 {x.shape}, metric {y.shape}, selected_mask {chosen.shape} and noisy_mask "
                         f"{noisy.shape} must have one entry per record")
    shown = np.isfinite(x) & (x > 0) & np.isfinite(y)
    # LP has heavy tails (a tiny P0 - Pn): the y range is the 0.5..99.5th
    # percentile widened by a tenth, and the points beyond it are drawn on
    # its edge (counted in the title), so the bulk is not squashed flat.
    lo, hi = np.percentile(y[shown], [0.5, 99.5]) if shown.any() else (0.0, 1.0)
    pad = 0.1 * (hi - lo) or 0.5
    lo, hi = lo - pad, hi + pad
    outside = int((shown & ((y < lo) | (y > hi))).sum())
    y = np.clip(y, lo, hi)
    fig = Figure(figsize=(7, 5))
    ax = fig.add_subplot()
    layers = [  # drawn in this order, so the selection lies on top of the pool
        (~chosen & ~noisy, dict(s=2, c="0.7", marker=".", linewidths=0), "not selected"),
        (~chosen & noisy, dict(s=5, c="tab:blue", marker="x", linewidths=0.4, alpha=0.6), "noisy, not selected"),
        (chosen & ~noisy, dict(s=6, c="tab:red", marker=".", linewidths=0), "selected"),
        (chosen & noisy, dict(s=10, c="black", marker="x", linewidths=0.7), "noisy, selected"),
    ]
    for mask, style, label in layers:
        if noisy_mask is None and "noisy" in label:
            continue
        mask = mask & shown
        ax.scatter(x[mask], y[mask], rasterized=True, label=f"{label} ({int(mask.sum())})", **style)
    ax.set_xscale("log")
    ax.set_xlabel("P0 (perplexity before training, log scale)")
    name = metric_name or "metric"
    ax.set_ylabel(name)
    ax.set_ylim(lo - 0.02 * (hi - lo), hi + 0.02 * (hi - lo))
    ax.set_title(f"{name} against P0: {'low' if hard_is_low else 'high'} {name} = hard"
                 + (f"\n({outside} records beyond the range drawn on its edge)" if outside else ""), fontsize=10)
    ax.legend(loc="best", fontsize=8, markerscale=3)
    return atomic.save_figure(fig, path)


# ---------------------------------------------------------------------------
# Findings


def _length_finding(result: Mapping) -> list[str]:
    unit = result.get("length_unit", "chars")
    rho = _num(result.get("correlations", {}).get(f"response {unit}"))
    if not abs(rho) > LENGTH_RHO:
        return []
    if rho > 0:
        advice = "(harder = longer): compare it with the `longest` baseline."
    else:
        advice = "(harder = shorter): compare it with `random` and with `select.stratify=length`."
    return [f"The selection behaves like a length filter: Spearman rho between hardness and response length "
            f"is {rho:.2f} {advice}"]


def _longest_finding(result: Mapping) -> list[str]:
    share = _num(result.get("longest_overlap"))
    if not share > LONGEST_OVERLAP:
        return []
    return [f"{_pct(share)} of the selection is also among the {result.get('selected', 'same number of')} "
            f"longest responses: compare it with the `longest` baseline."]


def _token_finding(result: Mapping) -> list[str]:
    tokens = result.get("tokens") or {}
    ratio = _num(tokens.get("ratio"))
    low, high = TOKEN_RATIO_RANGE
    if not (ratio > high or ratio < low):
        return []
    unit = "tokens" if "tokens" in str(tokens.get("unit", "tokens")) else "characters"
    return [f"The selection holds {ratio:.2g}x the {unit} of a random subset of the same count: "
            f"compare with `random_tokens`, not only `random`."]


def _flag_findings(result: Mapping) -> list[str]:
    shares = result.get("flags") or {}
    pool = shares.get("pool", {})
    out = []
    top = _top_group(result)
    checks = [(top, TOP_FLAG_FACTOR, f"The {top}", "consider `select.exclude_hardest`."),
              ("selection", SELECTION_FLAG_FACTOR, "The selection",
               "consider filtering them out of the pool before selecting.")]
    said = {}  # flag -> share already reported (a 1 % selection is the hardest 1 %: say it once)
    for group, factor, subject, advice in checks:
        for flag, share in (shares.get(group) or {}).items():
            share, base = _num(share), _num(pool.get(flag, 0.0))
            if said.get(flag) == share:
                continue
            if share >= FLAG_MIN_SHARE and share >= factor * base:
                said[flag] = share
                what = FLAG_WORDS.get(flag, flag)
                out.append(f"{subject} is {_pct(share)} {what} (pool: {_pct(base)}): {advice}")
    return out


def _noisy_finding(result: Mapping) -> list[str]:
    noisy = result.get("noisy")
    if not noisy:
        return []
    chosen, pool = _num(noisy.get("selection")), _num(noisy.get("pool"))
    if not (chosen > 0 and chosen >= NOISY_FACTOR * pool):
        return []
    return [f"The selection is drawn to the deliberately wrong answers: {_pct(chosen)} of it against "
            f"{_pct(pool)} of the pool."]


def _group_findings(result: Mapping, shown: int = 10) -> list[str]:
    out = []
    for key, rows in (result.get("groups") or {}).items():
        never = [r["value"] for r in rows if r["selected"] == 0]
        if not never or not rows:
            continue
        names = ", ".join(never[:shown]) + (f" and {len(never) - shown} more" if len(never) > shown else "")
        out.append(f"{len(never)} of {len(rows)} `{key}` values are never selected: {names}.")
    return out


def _spread_finding(result: Mapping) -> list[str]:
    spread = result.get("spread") or {}
    relative = _num(spread.get("relative_iqr"))
    if not relative < RELATIVE_IQR:
        return []
    name, iqr = result.get("metric", "metric"), _num(spread.get("iqr"))
    if iqr == 0:
        return [f"Half of all `{name}` values are equal: the ranking among them rests on record order alone."]
    return [f"Half of all `{name}` values lie within {iqr:.2g} of each other: "
            f"the ranking rests on differences that small."]


def _transfer_findings(result: Mapping) -> list[str]:
    out = []
    for label, found in (result.get("transfer") or {}).items():
        overall, within = _num(found.get("global")), _num(found.get("mean_within"))
        if overall - within > TRANSFER_LENGTH_GAP:
            count = len(found.get("bins") or [])
            where = "length deciles" if count == 10 else f"{count} length bins"
            out.append(f"Part of the agreement with {label} is length: Kendall tau {overall:.2f} over all "
                       f"records, {within:.2f} on average within {where}.")
    return out


def _top_group(result: Mapping) -> str:
    return f"hardest {float(result.get('top_percent', 1.0)):g} %"


def findings(result: Mapping) -> list[str]:
    """One plain sentence per thing a user should act on, from ``audit``'s dict; [] when nothing stands out."""
    return [*_length_finding(result), *_longest_finding(result), *_token_finding(result),
            *_flag_findings(result), *_noisy_finding(result), *_group_findings(result),
            *_spread_finding(result), *_transfer_findings(result)]


# ---------------------------------------------------------------------------
# Everything at once


def _token_lengths(records: Sequence[Mapping], prompt_tokens: np.ndarray | None,
                   response_tokens: np.ndarray | None) -> tuple[np.ndarray, str]:
    """The budget per record and its unit: prompt + response tokens, response tokens, or chars."""
    if response_tokens is not None and prompt_tokens is not None:
        return np.asarray(prompt_tokens, np.float64) + np.asarray(response_tokens, np.float64), "tokens"
    if response_tokens is not None:
        return np.asarray(response_tokens, np.float64), "response tokens"
    return (prompt_chars(records) + response_chars(records)).astype(np.float64), "chars"


def audit(
    records: Sequence[Mapping],
    metric: np.ndarray,
    hard_is_low: bool,
    selection: Sequence[int] | np.ndarray,
    *,
    metric_name: str = "metric",
    p0: np.ndarray | None = None,
    prompt_tokens: np.ndarray | None = None,
    response_tokens: np.ndarray | None = None,
    cut: np.ndarray | None = None,
    random_indices: Sequence[int] | np.ndarray | None = None,
    compare: Mapping[str, np.ndarray] | None = None,
    group_keys: Sequence[str] = ("kind", "noisy", "category"),
    top_percent: float = 1.0,
    length_bins: int = 10,
) -> dict[str, Any]:
    """The whole audit of one selection as a JSON-able dict (NaN as None), findings included.

    `compare` maps labels to other metric vectors over the same records (same
    metric, other probes) for the transfer-within-length check; `p0` adds
    `p0_correlation`, P0's Spearman rho with response length: the reference
    a metric's length correlation is read against.
    """
    n = len(records)
    values = np.asarray(metric, dtype=np.float64)
    if values.shape != (n,):
        raise ValueError(f"metric has shape {values.shape}, expected ({n},) for {n} records")
    chosen = _indices(selection, n)
    lengths = {"response chars": response_chars(records), "prompt chars": prompt_chars(records)}
    if response_tokens is not None:
        lengths["response tokens"] = np.asarray(response_tokens)
    if prompt_tokens is not None:
        lengths["prompt tokens"] = np.asarray(prompt_tokens)
    unit = "tokens" if response_tokens is not None else "chars"
    response = lengths[f"response {unit}"]
    budget, budget_unit = _token_lengths(records, prompt_tokens, response_tokens)
    top = _top_group({"top_percent": top_percent})
    groups = {top: select_hardest(values, top_percent, hard_is_low), "selection": chosen, "pool": np.arange(n)}
    result = {
        "metric": metric_name,
        "hard_is_low": bool(hard_is_low),
        "n": n,
        "selected": int(chosen.size),
        "top_percent": float(top_percent),
        "length_unit": unit,
        "correlations": length_correlations(values, hard_is_low, lengths),
        "longest_overlap": longest_overlap(chosen, response) if chosen.size else math.nan,
        "tokens": {**token_share(chosen, budget, random_indices), "unit": budget_unit},
        "flags": flag_shares(quality_flags(records, cut), groups),
        "groups": {k: group_rates(records, chosen, k) for k in group_keys if any(k in r for r in records)},
        "spread": metric_spread(values),
        "transfer": {label: transfer_within_length(values, other, response, length_bins)
                     for label, other in (compare or {}).items()},
    }
    if p0 is not None:
        # P0 is a high = hard metric of its own: its length correlation is the baseline LP is read against.
        result["p0_correlation"] = length_correlations(p0, False, {f"response {unit}": response})[f"response {unit}"]
    if any("noisy" in r for r in records):
        noisy = np.array([bool(r.get("noisy")) for r in records], dtype=bool)
        result["noisy"] = {"selection": float(noisy[chosen].mean()) if chosen.size else 0.0,
                           "pool": float(noisy.mean()) if n else 0.0}
    result = _plain(result)
    result["findings"] = findings(result)
    return result


# ---------------------------------------------------------------------------
# Markdown


def _f(x: Any, digits: int = 3) -> str:
    value = _num(x)
    return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"


def _g(x: Any) -> str:
    value = _num(x)
    return "n/a" if not math.isfinite(value) else f"{value:.4g}"


def _total(x: Any) -> str:
    value = _num(x)
    return "n/a" if not math.isfinite(value) else f"{value:,.0f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    # Cells escaped: a "|" inside a value (a group name, say) would split the markdown cell.
    return [*markdown.table(header, rows, markdown.escaped), ""]


def _length_section(result: Mapping) -> list[str]:
    rows = [[name, _f(rho)] for name, rho in result.get("correlations", {}).items()]
    if "p0_correlation" in result:
        rows.append([f"P0 vs response {result['length_unit']} (reference)", _f(result["p0_correlation"])])
    return ["### Length", "", "Spearman rho between hardness (higher = harder) and length; positive means "
            "harder = longer.", "", *_table(["length", "rho"], rows),
            f"Share of the selection among the {result.get('selected')} longest responses "
            f"(by {result.get('length_unit')}): {_pct(result.get('longest_overlap'))}.", ""]


def _token_section(result: Mapping) -> list[str]:
    t = result.get("tokens") or {}
    return ["### Token budget", "", *_table(
        [f"unit: {t.get('unit')}", "selection", "random subset (same count)", "pool mean"],
        [["total / mean", f"{_total(t.get('selection_tokens'))} / {_g(t.get('selection_mean'))}",
          _total(t.get("random_tokens")), _g(t.get("pool_mean"))],
         ["ratio to random", _f(t.get("ratio"), 2), "1.00", ""]])]


def _flag_section(result: Mapping) -> list[str]:
    shares = result.get("flags") or {}
    groups = list(shares)
    names = list(next(iter(shares.values()), {}))
    rows = [[FLAG_WORDS.get(f, f)] + [_pct(shares[g].get(f)) for g in groups] for f in names]
    lines = ["### Quality flags", "", *_table(["flag", *groups], rows)]
    if result.get("noisy"):
        lines += [f"Deliberately wrong (`noisy`) records: {_pct(result['noisy'].get('selection'))} of the "
                  f"selection, {_pct(result['noisy'].get('pool'))} of the pool.", ""]
    return lines


def _group_section(result: Mapping, shown: int = 30) -> list[str]:
    lines = []
    for key, rows in (result.get("groups") or {}).items():
        top = sorted(rows, key=lambda r: -r["pool"])[:shown]
        lines += [f"### Selection rate by `{key}`", "", *_table(
            [key, "pool", "selected", "rate"], [[r["value"], r["pool"], r["selected"], _pct(r["rate"])] for r in top])]
        if len(rows) > shown:
            lines += [f"({len(rows) - shown} smaller values not shown)", ""]
    return lines


def _spread_section(result: Mapping) -> list[str]:
    s = result.get("spread") or {}
    return [f"### Spread of `{result.get('metric')}`", "", *_table(
        ["min", "median", "IQR", "max", "IQR / abs(median)"],
        [[_g(s.get("min")), _g(s.get("median")), _g(s.get("iqr")), _g(s.get("max")), _g(s.get("relative_iqr"))]])]


def _transfer_section(result: Mapping) -> list[str]:
    lines = []
    for label, found in (result.get("transfer") or {}).items():
        rows = [[f"{_g(b['low'])}..{_g(b['high'])}", b["n"], _f(b["tau"])] for b in found["bins"]]
        rows += [["mean within bins", "", _f(found.get("mean_within"))],
                 ["all records", result.get("n"), _f(found.get("global"))]]
        lines += [f"### Agreement with {label} within response-length bins", "",
                  "Kendall tau-b; a global tau well above the within-bin taus is agreement on length.", "",
                  *_table([f"response {result.get('length_unit')}", "records", "tau"], rows)]
    return lines


def audit_markdown(result: Mapping, figure: str | None = None) -> str:
    """``audit``'s dict as a "## Selection audit" report section, ending with what to act on."""
    said = result.get("findings")
    said = findings(result) if said is None else said
    hard = "low" if result.get("hard_is_low", True) else "high"
    lines = ["## Selection audit", "",
             f"`{result.get('metric')}` over {result.get('n')} records ({hard} = hard); "
             f"{result.get('selected')} selected. What the selection is made of: length, token budget, "
             "quality flags, coverage.", "",
             *_length_section(result), *_token_section(result), *_flag_section(result),
             *_group_section(result), *_spread_section(result), *_transfer_section(result)]
    if figure:
        lines += [f"![hardness map]({figure})", ""]
    lines += ["### What to act on", ""]
    lines += [f"- {s}" for s in said] if said else ["Nothing stands out."]
    return "\n".join(lines) + "\n"
