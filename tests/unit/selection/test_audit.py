"""audit.py: length correlations, longest overlap, token budget, quality flags,
transfer within length, groups, spread, findings, the hardness map and the
audit dict. Every expected figure is computed here by hand or with
numpy/scipy, never taken from the module."""

import json

import numpy as np
import pytest
from scipy.stats import kendalltau, spearmanr

from lpjax.selection.audit import (
    audit, audit_markdown, findings, flag_shares, group_rates, length_correlations, longest_overlap, metric_spread,
    plot_hardness_map, prompt_chars, quality_flags, response_chars, token_share, transfer_within_length,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def rec(output, instruction="Say something.", input="", **meta):
    return {"instruction": instruction, "input": input, "output": output, **meta}


def words(n, last):
    """n words, the last one `last`."""
    return " ".join(["word"] * (n - 1) + [last])


# ---------------------------------------------------------------------------
# Lengths


def test_response_and_prompt_chars():
    records = [rec("abc", "do", "xyz"), rec("", "hello"), rec("Привет", "", "")]
    assert response_chars(records).tolist() == [3, 0, 6]
    assert prompt_chars(records).tolist() == [5, 5, 0]


def test_length_correlation_sign_and_value():
    length = np.array([5.0, 1, 9, 3, 7, 2, 8])
    # LP-like (low = hard) and exactly -length: harder = longer, rho = +1.
    assert length_correlations(-length, True, {"len": length})["len"] == pytest.approx(1.0)
    # The same vector read as high = hard: harder = shorter, rho = -1.
    assert length_correlations(-length, False, {"len": length})["len"] == pytest.approx(-1.0)
    rng = np.random.default_rng(1)
    metric, other = rng.normal(size=50), rng.integers(0, 20, size=50)
    got = length_correlations(metric, True, {"a": other, "b": other * 2})
    expected = spearmanr(-metric, other).statistic
    assert got["a"] == pytest.approx(expected)
    assert got["b"] == pytest.approx(expected)
    assert list(got) == ["a", "b"]
    got_high = length_correlations(metric, False, {"a": other})["a"]
    assert got_high == pytest.approx(spearmanr(metric, other).statistic)


def test_longest_overlap_with_ties():
    #                    0  1  2  3  4  5  6  7  8  9
    lengths = np.array([5, 9, 9, 1, 9, 3, 7, 9, 2, 0])
    # Top 3 by length, ties by lower index: the 9s at 1, 2, 4 (not 7).
    assert longest_overlap([2, 7, 6], lengths) == pytest.approx(1 / 3)
    assert longest_overlap([1, 4, 9], lengths) == pytest.approx(2 / 3)
    assert longest_overlap([4, 2, 1], lengths) == pytest.approx(1.0)
    # Top 5: 1, 2, 4, 7 (the 9s) and 6 (the 7).
    assert longest_overlap([0, 3, 5, 6, 7], lengths) == pytest.approx(2 / 5)


def test_token_share_with_and_without_random_indices():
    tokens = np.arange(10, 101, 10)  # 10..100, mean 55
    expected = token_share([8, 9], tokens)
    assert expected["selection_tokens"] == 190
    assert expected["random_tokens"] == pytest.approx(2 * 55)
    assert expected["ratio"] == pytest.approx(190 / 110)
    assert expected["selection_mean"] == pytest.approx(95)
    assert expected["pool_mean"] == pytest.approx(55)
    actual = token_share([8, 9], tokens, random_indices=[0, 1])
    assert actual["random_tokens"] == 30
    assert actual["ratio"] == pytest.approx(190 / 30)
    assert set(actual) == {"selection_tokens", "random_tokens", "ratio", "selection_mean", "pool_mean"}
    with pytest.raises(ValueError):
        token_share([8, 9], tokens, random_indices=[0])


# ---------------------------------------------------------------------------
# Quality flags


FLAG_RECORDS = [
    rec("   \n"),                                                      # 0 empty
    rec("Paris is the capital of France.", "Capital of France?"),      # 1 duplicate of 2
    rec("Paris is the capital of France.", "Capital of France?"),      # 2 duplicate of 1
    rec("Paris is the capital of France.", "Capital of France?", "x"),  # 3 other input: not a duplicate
    rec(words(25, "and")),                                             # 4 cut off
    rec(words(25, "end.")),                                            # 5 finished
    rec(words(10, "and")),                                             # 6 too short to judge
    rec(words(24, "items,") + "  "),                                   # 7 cut off after a comma
    rec("Привет, как дела? Это простой тест."),                        # 8 mostly Cyrillic
    rec("Café au lait is a coffee drink made with hot milk."),          # 9 one accent: not non-ASCII
    rec("<p>Hello <b>world</b></p>"),                                  # 10 HTML
    rec("Run this:\n```python\nprint(1)\n```"),                        # 11 code fence
    rec("The sky is blue because of Rayleigh scattering."),            # 12 plain
    rec("**Bold** and __under__ ok"),                                  # 13 markup symbols, no tag
    rec("Use E = mc^2 to find the energy released by the reaction in the core of a star."),  # 14 few symbols
    rec("If the price a is < the cost b, and the margin c is > 0, stop selling now."),  # 15 no tag, 2 symbols
]

EXPECTED_FLAGS = {
    "empty": [0],
    "duplicated": [1, 2],
    "truncated": [4, 7],
    "non_ascii": [8],
    "markup": [10, 11, 13],
}


def test_each_quality_flag():
    flags = quality_flags(FLAG_RECORDS)
    assert list(flags) == ["empty", "duplicated", "truncated", "non_ascii", "markup"]
    for name, positives in EXPECTED_FLAGS.items():
        assert flags[name].dtype == bool and flags[name].shape == (len(FLAG_RECORDS),)
        assert np.flatnonzero(flags[name]).tolist() == positives, name


def test_flag_thresholds_by_hand():
    # Record 14: 2 markup symbols ('=', '^') among its non-space characters: under 5 %.
    text = FLAG_RECORDS[14]["output"]
    chars = "".join(text.split())
    assert sum(c in "=^" for c in chars) == 2 and 2 / len(chars) < 0.05
    # Record 13: 8 of 22 non-space characters are '*' or '_'.
    chars = "".join(FLAG_RECORDS[13]["output"].split())
    assert (len(chars), sum(c in "*_" for c in chars)) == (22, 8)
    # Record 15: '<' and '>' with a space after '<' (no tag), 2 of 56 characters.
    chars = "".join(FLAG_RECORDS[15]["output"].split())
    assert (len(chars), sum(c in "<>" for c in chars)) == (56, 2)
    # Record 9: 1 non-ASCII character ('é') in 41.
    chars = "".join(FLAG_RECORDS[9]["output"].split())
    assert sum(ord(c) > 127 for c in chars) == 1


def test_tokenizer_cut_marks_truncated():
    cut = np.zeros(len(FLAG_RECORDS), bool)
    cut[12] = True
    assert np.flatnonzero(quality_flags(FLAG_RECORDS, cut)["truncated"]).tolist() == [4, 7, 12]


def test_flag_shares_per_group():
    flags = {"empty": np.array([1, 0, 0, 1, 0, 0, 0, 0], bool), "markup": np.array([0, 1, 1, 1, 0, 0, 0, 1], bool)}
    groups = {"hard": np.array([0, 3]), "sel": np.array([0, 1, 2, 4, 5]), "pool": np.arange(8),
              "none": np.array([], dtype=np.int64)}
    shares = flag_shares(flags, groups)
    assert shares["hard"] == {"empty": 1.0, "markup": 0.5}
    assert shares["sel"] == pytest.approx({"empty": 1 / 5, "markup": 2 / 5})
    assert shares["pool"] == pytest.approx({"empty": 2 / 8, "markup": 4 / 8})
    assert shares["none"] == {"empty": 0.0, "markup": 0.0}


# ---------------------------------------------------------------------------
# Transfer within length, groups, spread


def test_transfer_within_length_agreement_only_through_length():
    rng = np.random.default_rng(0)
    # 10 length levels of 200 records each: the equal-count bins are the levels.
    lengths = np.repeat(np.arange(10) * 10.0, 200)
    rng.shuffle(lengths)
    a = lengths + rng.normal(size=lengths.size)
    b = lengths + rng.normal(size=lengths.size)
    got = transfer_within_length(a, b, lengths, bins=10)
    assert got["global"] == pytest.approx(kendalltau(a, b).statistic)
    assert got["global"] > 0.7
    assert [r["n"] for r in got["bins"]] == [200] * 10
    assert [(r["low"], r["high"]) for r in got["bins"]] == [(10.0 * k, 10.0 * k) for k in range(10)]
    for r, level in zip(got["bins"], range(10)):
        inside = lengths == 10.0 * level
        assert r["tau"] == pytest.approx(kendalltau(a[inside], b[inside]).statistic)
        assert abs(r["tau"]) < 0.2
    assert abs(got["mean_within"]) < 0.06
    assert got["mean_within"] == pytest.approx(np.mean([kendalltau(a[lengths == 10.0 * k], b[lengths == 10.0 * k])
                                                        .statistic for k in range(10)]))


def test_transfer_bins_by_rank_with_ties_by_index():
    lengths = np.array([3, 1, 3, 1, 2, 2])
    a = np.array([1.0, 2, 3, 4, 5, 6])
    b = np.array([2.0, 1, 4, 3, 6, 5])
    got = transfer_within_length(a, b, lengths, bins=3)
    # Stable order by length: {1, 3} (length 1), {4, 5} (2), {0, 2} (3).
    assert [(r["low"], r["high"], r["n"]) for r in got["bins"]] == [(1, 1, 2), (2, 2, 2), (3, 3, 2)]
    expected = [kendalltau(a[i], b[i]).statistic for i in ([1, 3], [4, 5], [0, 2])]
    assert expected == pytest.approx([1, -1, 1])  # by hand: a, b agree on {1, 3} and {0, 2}, not on {4, 5}
    assert [r["tau"] for r in got["bins"]] == pytest.approx(expected)
    assert got["mean_within"] == pytest.approx(1 / 3)
    # 23 records in 5 bins: 5, 5, 5, 4, 4 by rank; lengths 0..22 shuffled.
    lengths = np.random.default_rng(3).permutation(23)
    got = transfer_within_length(np.arange(23.0), np.arange(23.0) ** 2, lengths, bins=5)
    assert [(r["low"], r["high"], r["n"]) for r in got["bins"]] == [(0, 4, 5), (5, 9, 5), (10, 14, 5),
                                                                       (15, 18, 4), (19, 22, 4)]


def test_group_rates():
    records = [rec("a", kind="add"), rec("b", kind="parity"), rec("c", kind="add"), rec("d"), rec("e", kind=3),
               rec("f", kind="add")]
    rows = group_rates(records, [0, 3, 4], "kind")
    assert rows == [{"value": "3", "pool": 1, "selected": 1, "rate": 1.0},
                    {"value": "add", "pool": 3, "selected": 1, "rate": pytest.approx(1 / 3)},
                    {"value": "parity", "pool": 1, "selected": 0, "rate": 0.0}]


def test_metric_spread():
    got = metric_spread(np.array([5.0, 1, 4, 2, 3]))
    assert (got["min"], got["max"], got["median"], got["iqr"]) == (1, 5, 3, 2)  # quartiles 2 and 4
    assert got["relative_iqr"] == pytest.approx(2 / 3)
    # Quartiles by linear interpolation: -0.125 and 0.125; the median 0 is floored at 1e-12.
    assert metric_spread(np.array([-0.5, 0.0, 0.0, 0.5]))["relative_iqr"] == pytest.approx(0.25 / 1e-12)


# ---------------------------------------------------------------------------
# Findings


def _plain_records(n, rng):
    """n unique, clean, short records of 4..12 words ending with a full stop."""
    return [rec(" ".join(["token"] * int(rng.integers(3, 12))) + f" number {i}.", f"Task {i}?") for i in range(n)]


def test_findings_length_filter():
    rng = np.random.default_rng(5)
    records = _plain_records(400, rng)
    lengths = np.array([len(r["output"]) for r in records], float)
    metric = -lengths + rng.normal(scale=0.5, size=400)  # LP-like: low = hard = long
    selection = np.argsort(metric, kind="stable")[:40]
    result = audit(records, metric, True, selection, metric_name="lp_app")
    rho = spearmanr(-metric, lengths).statistic
    assert rho > 0.9
    assert result["correlations"]["response chars"] == pytest.approx(rho)
    sentences = [s for s in result["findings"] if "length filter" in s]
    assert len(sentences) == 1
    assert f"{rho:.2f}" in sentences[0] and "`longest`" in sentences[0]


def test_findings_none():
    rng = np.random.default_rng(6)
    records = _plain_records(500, rng)
    metric = rng.uniform(1.0, 2.0, size=500)  # independent of everything, wide spread
    selection = np.argsort(metric, kind="stable")[:50]
    result = audit(records, metric, True, selection, metric_name="lp1")
    assert result["findings"] == []
    assert findings(result) == []
    assert "Nothing stands out." in audit_markdown(result)


def test_findings_sentences_from_a_hand_made_result():
    result = {
        "metric": "lp_app", "n": 1000, "selected": 100, "top_percent": 1.0, "length_unit": "tokens",
        "correlations": {"response tokens": 0.2}, "longest_overlap": 0.2,
        "tokens": {"ratio": 2.3, "unit": "tokens"},
        "flags": {"hardest 1 %": {"empty": 0.4, "markup": 0.03}, "selection": {"empty": 0.02, "markup": 0.025},
                  "pool": {"empty": 0.02, "markup": 0.02}},
        "noisy": {"selection": 0.18, "pool": 0.10},
        "groups": {"kind": [{"value": v, "pool": 10, "selected": 0 if v in ("add", "parity") else 1,
                             "rate": 0.0} for v in ("add", "copy", "parity")]},
        "spread": {"iqr": 0.0004, "relative_iqr": 0.0004 / 0.5},
        "transfer": {"opt-13b": {"global": 0.71, "mean_within": 0.52, "bins": [{}] * 10}},
    }
    said = findings(result)
    assert said == [
        "The selection holds 2.3x the tokens of a random subset of the same count: compare with `random_tokens`, "
        "not only `random`.",
        "The hardest 1 % is 40 % empty responses (pool: 2 %): consider `select.exclude_hardest`.",
        "The selection is drawn to the deliberately wrong answers: 18 % of it against 10 % of the pool.",
        "2 of 3 `kind` values are never selected: add, parity.",
        "Half of all `lp_app` values lie within 0.0004 of each other: the ranking rests on differences that small.",
        "Part of the agreement with opt-13b is length: Kendall tau 0.71 over all records, 0.52 on average within "
        "length deciles.",
    ]
    # markup: 3 % in the hardest 1 % is under 2x the pool's 2 %, 2.5 % in the selection under 1.5x;
    # at 2x the pool's share it is reported.
    result["flags"]["selection"]["markup"] = 0.04
    assert "The selection is 4 % markup-heavy responses (pool: 2 %)" in " ".join(findings(result))
    result["longest_overlap"] = 0.8
    assert any(s.startswith("80 % of the selection is also among the 100 longest") for s in findings(result))


# ---------------------------------------------------------------------------
# The hardness map and the whole audit


def test_hardness_map_writes_png(tmp_path):
    rng = np.random.default_rng(7)
    n = 2000
    p0 = np.exp(rng.uniform(0, 4, size=n))
    metric = rng.uniform(0, 1, size=n)
    selected = np.zeros(n, bool)
    selected[np.argsort(metric)[:200]] = True
    noisy = rng.uniform(size=n) < 0.1
    path = plot_hardness_map(p0, metric, selected, tmp_path / "map.png", "lp_app", noisy_mask=noisy)
    assert str(path) == str(tmp_path / "map.png")
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE


def test_audit_is_json_and_matches_hand_figures():
    rng = np.random.default_rng(8)
    kinds = ["add", "copy", "parity"]
    records = [rec(f"answer {i} " + "x " * int(rng.integers(1, 30)), f"Q{i}", kind=kinds[i % 3], noisy=i % 10 == 0)
               for i in range(300)]
    records[5]["output"] = ""
    records[7] = dict(records[6])  # a duplicate pair
    metric = rng.normal(size=300)
    metric[5] = -10.0  # the empty response is the hardest (low = hard)
    selection = np.argsort(metric, kind="stable")[:30]
    resp_tok, prompt_tok = rng.integers(1, 100, size=300), rng.integers(5, 20, size=300)
    random_idx = rng.choice(300, 30, replace=False)
    other = metric + rng.normal(size=300)
    result = audit(records, metric, True, selection, metric_name="lp1", p0=np.exp(rng.uniform(0, 3, 300)),
                   prompt_tokens=prompt_tok, response_tokens=resp_tok, random_indices=random_idx,
                   compare={"other": other}, length_bins=5)
    text = json.dumps(result, allow_nan=False)
    assert json.loads(text) == result
    assert (result["n"], result["selected"], result["length_unit"]) == (300, 30, "tokens")
    assert result["correlations"]["response tokens"] == pytest.approx(spearmanr(-metric, resp_tok).statistic)
    assert result["correlations"]["prompt chars"] == pytest.approx(
        spearmanr(-metric, [len(r["instruction"]) + len(r["input"]) for r in records]).statistic)
    total = resp_tok + prompt_tok
    assert result["tokens"]["ratio"] == pytest.approx(total[selection].sum() / total[random_idx].sum())
    # Hardest 1 % of 300 = 3 records, the empty one first.
    top = np.argsort(metric, kind="stable")[:3]
    assert result["flags"]["hardest 1 %"]["empty"] == pytest.approx(1 / 3)
    assert result["flags"]["pool"]["empty"] == pytest.approx(1 / 300)
    assert result["flags"]["pool"]["duplicated"] == pytest.approx(2 / 300)
    assert 5 in top
    noisy = np.array([i % 10 == 0 for i in range(300)])
    assert result["noisy"] == {"selection": pytest.approx(noisy[selection].mean()), "pool": pytest.approx(0.1)}
    assert [r["value"] for r in result["groups"]["kind"]] == kinds
    assert sum(r["selected"] for r in result["groups"]["kind"]) == 30
    assert set(result["groups"]) == {"kind", "noisy"}
    assert result["transfer"]["other"]["global"] == pytest.approx(kendalltau(metric, other).statistic)
    assert [b["n"] for b in result["transfer"]["other"]["bins"]] == [60] * 5
    assert any("empty responses" in s and "hardest 1 %" in s for s in result["findings"])
    md = audit_markdown(result, figure="select/hardness_map.png")
    assert md.startswith("## Selection audit")
    assert "![hardness map](select/hardness_map.png)" in md
    assert "### What to act on" in md and "- The hardest 1 % is 33 % empty responses" in md
