"""The judge's prompt, the parsing of its first line, the order-swap rule
on every combination of the two verdicts, and the figures, against numbers
worked out by hand."""
import pytest

from lpjax.evaluation.judge import protocol as judge_protocol
from lpjax.evaluation.judge import stats as judge_stats
from lpjax.evaluation.judge.stats import LOSE, TIE, WIN, bootstrap_interval, combine, order_verdict, summarize


def test_prompt_shows_question_and_answers_in_the_given_order():
    system, user = judge_protocol.messages("What is {x}?", "first {answer}", "second")
    assert system == {"role": "system", "content": judge_protocol.SYSTEM_PROMPT}
    text = user["content"]
    assert text.startswith("[Question]\nWhat is {x}?\n\n[The Start of Assistant 1's Answer]\nfirst {answer}\n\n")
    assert text.index("first {answer}") < text.index("[The Start of Assistant 2's Answer]\nsecond\n\n")
    assert "two values indicating the scores for Assistant 1 and 2" in text and text.endswith("judgment.\n\n")


@pytest.mark.parametrize("reply,scores", [
    ("8 7\nAssistant 1 is more detailed.", (8.0, 7.0)),
    ("8,7", (8.0, 7.0)),
    ("9, 3", (9.0, 3.0)),
    ("\n  6.5   10 \nbecause", (6.5, 10.0)),
    ("10 1", (10.0, 1.0)),
    ("Assistant 1: 8\nAssistant 2: 7", None),
    ("8", None),
    ("8 7 6", None),
    ("11 3", None),
    ("-1 -1", None),
    ("nan 3", None),
    ("", None),
    (None, None),
    ("The first answer is better. 8 7", None),
])
def test_first_line_scores(reply, scores):
    assert judge_protocol.parse_scores(reply) == scores


# A's verdict in order ab x in order ba -> over both orders (the rule:
# win = wins both or wins one and ties the other; lose the mirror; tie otherwise).
SWAP_RULE = {
    (WIN, WIN): WIN, (WIN, TIE): WIN, (TIE, WIN): WIN,
    (LOSE, LOSE): LOSE, (LOSE, TIE): LOSE, (TIE, LOSE): LOSE,
    (WIN, LOSE): TIE, (LOSE, WIN): TIE, (TIE, TIE): TIE,
}


@pytest.mark.parametrize("ab,ba", list(SWAP_RULE))
def test_order_swap_rule_on_every_combination(ab, ba):
    assert combine(ab, ba) == SWAP_RULE[(ab, ba)]


@pytest.mark.parametrize("ab,ba", [(None, WIN), (TIE, None), (None, None)])
def test_an_unparsed_order_leaves_no_verdict(ab, ba):
    assert combine(ab, ba) is None


def test_order_verdict():
    assert (order_verdict(8, 7), order_verdict(7, 7), order_verdict(6.5, 7)) == (WIN, TIE, LOSE)


def test_winning_score():
    assert judge_stats.winning_score(3, 2, 2) == pytest.approx(1 / 7 + 1)
    assert judge_stats.winning_score(5, 0, 0) == 2.0 and judge_stats.winning_score(0, 0, 4) == 0.0
    assert judge_stats.winning_score(0, 0, 0) is None


def test_bootstrap_interval():
    # All wins: every resample scores 2.
    assert bootstrap_interval([1] * 9, 500, 0) == (2.0, 2.0)
    # One win, one loss: a resample's score is 0, 1 or 2 with chances 1/4,
    # 1/2, 1/4, so the 2.5th and 97.5th percentiles are 0 and 2.
    assert bootstrap_interval([1, -1], 4000, 0) == (0.0, 2.0)
    # Seeded, and the interval brackets the point estimate of 1 + 2/10.
    outcomes = [1] * 5 + [0] * 2 + [-1] * 3
    low, high = bootstrap_interval(outcomes, 3000, 7)
    assert (low, high) == bootstrap_interval(outcomes, 3000, 7) and low < 1.2 < high
    assert bootstrap_interval(outcomes, 0, 7) is None and bootstrap_interval([], 100, 0) is None


def test_summarize_counts_flips_and_unparsed():
    v = lambda ab, ba: {"ab": ab, "ba": ba, "verdict": combine(ab, ba)}
    group = [v(WIN, WIN), v(WIN, TIE), v(WIN, LOSE), v(TIE, TIE), v(LOSE, TIE), v(None, WIN)]
    s = summarize(group, 0, 0)
    assert (s["questions"], s["win"], s["tie"], s["lose"], s["unparsed"]) == (6, 2, 2, 1, 1)
    assert s["winning_score"] == pytest.approx((2 - 1) / 5 + 1) and s["win_rate"] == pytest.approx(2 / 5)
    # Order changed the verdict in (win, tie), (win, lose), (lose, tie): 3 of the 5 decided.
    assert s["flip_rate"] == pytest.approx(3 / 5) and s["ci95"] is None


def test_verdicts_split_by_which_side_answered_longer():
    from lpjax.evaluation.judge.stats import by_longer_side

    v = lambda verdict: {"ab": verdict, "ba": verdict, "verdict": verdict}
    verdicts = [v("win"), v("win"), v("lose"), v("tie"), v(None), v("lose")]
    a = ["one two three", "a b c d", "x", "same len", "long answer here", "p q"]
    b = ["one", "a b", "x y z", "also two", "b", "p q r"]
    got = by_longer_side(verdicts, a, b, resamples=100, seed=0)
    # A longer: questions 1, 2, 5 (5 unparsed); B longer: 3, 6; same: 4.
    assert (got["a longer"]["win"], got["a longer"]["questions"], got["a longer"]["unparsed"]) == (2, 3, 1)
    assert (got["b longer"]["lose"], got["b longer"]["questions"]) == (2, 2)
    assert got["same length"]["tie"] == 1 and got["b longer"]["winning_score"] == 0.0
