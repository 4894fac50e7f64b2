"""judge_pairwise against a real HTTP server on 127.0.0.1 that plays the
judge: canned scores, a malformed reply, a 500, a 429 with Retry-After, a
reply slower than the timeout. Counts and winning score equal a hand
computation; a rerun, and a run killed midway then resumed, send each
request exactly once."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from lpjax.evaluation import JudgeError, JudgeSettings, judge_pairwise
from tests.conftest import REPO
from tests.integration.judge_server import USAGE, ScriptedJudge

QUESTIONS = [{"id": str(i), "instruction": f"question {i}", "set": "s1" if i <= 4 else "s2"} for i in range(1, 9)]
# Question 2 has an input: the judge sees it after the instruction.
QUESTIONS[1]["input"] = "with some input"
A = [f"alpha {i}" for i in range(1, 9)]
B = [f"beta answer {i}" for i in range(1, 9)]
MALFORMED = "The first assistant is better."

# Per question: the reply when A is shown first ("ab") and when B is ("ba"),
# each the judge's "score of Assistant 1, score of Assistant 2".
REPLIES = {
    1: ("8 6\nAssistant 1 is better.", "5 9"),  # A wins both: win
    2: ("7 7", "6, 8"),  # tie, then A wins: win
    3: ("3 9", "9 2"),  # A loses both: lose
    4: ("9 4", "9 4"),  # the first shown always wins: tie (a flip)
    5: ("5 5", "5 5"),  # tie, tie: tie
    6: (MALFORMED, "4 8"),  # unparsed: no verdict
    7: ("6 7", "7 7"),  # A loses, then tie: lose
    8: ("10 2", "1 10"),  # win
}
# Failures before the reply, per (question, order).
FAILURES = {(1, "ab"): [("status", 500, {})],
            (3, "ba"): [("status", 429, {"Retry-After": "1"})],
            (5, "ab"): [("hang", 1.5)]}


def script(question, first, second, hit):
    i = int(question.split()[1].split("\n")[0])
    order = "ab" if first == A[i - 1] else "ba"
    failures = FAILURES.get((i, order), [])
    return failures[hit] if hit < len(failures) else ("reply", REPLIES[i][0 if order == "ab" else 1])


OPTIONS = dict(concurrency=3, timeout=0.5, max_retries=3, backoff=0.01, bootstrap=500, seed=0)


def check_hand_computation(result):
    # W = questions 1, 2, 8; T = 4, 5; L = 3, 7; question 6 unparsed.
    assert (result.win, result.tie, result.lose, result.unparsed) == (3, 2, 2, 1)
    assert result.winning_score == pytest.approx((3 - 2) / 7 + 1) and result.win_rate == pytest.approx(3 / 7)
    # Swapping the order changed the verdict of questions 2, 4 and 7.
    assert result.flip_rate == pytest.approx(3 / 7)
    low, high = result.ci95
    assert 0 <= low < 8 / 7 < high <= 2
    assert result.unparsed_replies == [{"id": "6", "set": "s2", "order": "ab", "reply": MALFORMED}]
    s1, s2 = result.per_set["s1"], result.per_set["s2"]
    assert (s1["win"], s1["tie"], s1["lose"], s1["unparsed"]) == (2, 1, 1, 0)
    assert s1["winning_score"] == pytest.approx(1.25) and s1["flip_rate"] == pytest.approx(0.5)
    assert (s2["win"], s2["tie"], s2["lose"], s2["unparsed"]) == (1, 1, 1, 1)
    assert s2["winning_score"] == pytest.approx(1.0) and s2["flip_rate"] == pytest.approx(1 / 3)
    assert result.tokens == {k: 16 * v for k, v in USAGE.items()}
    assert result.lengths["a"]["mean_words"] == 2 and result.lengths["b"]["mean_words"] == 3
    # B always answered longer (3 words against 2): every verdict falls there.
    assert result.by_longer["b longer"]["win"] == 3 and result.by_longer["a longer"]["questions"] == 0
    by_id = {v["id"]: v for v in result.verdicts}
    assert by_id["2"]["scores_ab"] == [7.0, 7.0] and by_id["2"]["scores_ba"] == [6.0, 8.0]
    assert (by_id["2"]["ab"], by_id["2"]["ba"], by_id["2"]["verdict"]) == ("tie", "win", "win")


def test_scripted_judge_counts_retries_and_reruns(tmp_path, monkeypatch):
    monkeypatch.setenv("LPJAX_TEST_KEY", "sk-test")
    with ScriptedJudge(script) as judge:
        result = judge_pairwise(judge.base_url, "judge-model", QUESTIONS, A, B, str(tmp_path),
                                api_key_env="LPJAX_TEST_KEY", **OPTIONS)
        check_hand_computation(result)
        assert result.requests == {"total": 16, "sent": 16, "cached": 0}
        # Every request answered once; the 500, the 429 and the hang each cost one more arrival.
        assert len(judge.answered) == 16 and set(judge.answered.values()) == {1}
        assert sum(judge.received.values()) == 16 + 3
        assert judge.received[("question 1", "alpha 1")] == 2 and judge.received[("question 5", "alpha 5")] == 2
        gap = judge.arrivals[("question 3", "beta answer 3")]
        assert gap[1] - gap[0] >= 0.95  # Retry-After: 1, though the backoff alone is 10 ms
        assert all(h.get("Authorization") == "Bearer sk-test" for h in judge.headers)
        # The judge saw question 2's input after its instruction.
        assert ("question 2\n\nwith some input", "alpha 2") in judge.received

        # The same judge named by a JudgeSettings: the same requests, all cached.
        settings = JudgeSettings(base_url=judge.base_url, model="judge-model", api_key_env="LPJAX_TEST_KEY", **OPTIONS)
        again = judge_pairwise(QUESTIONS, A, B, str(tmp_path), settings)
        assert sum(judge.received.values()) == 16 + 3  # the rerun sent nothing
    assert again.requests == {"total": 16, "sent": 0, "cached": 16}
    assert {**again.to_dict(), "requests": None} == {**result.to_dict(), "requests": None}
    # The cache is keyed by the judge: another model name starts afresh.
    with ScriptedJudge(script) as judge:
        judge_pairwise(judge.base_url, "another-judge", QUESTIONS[:1], A[:1], B[:1], str(tmp_path),
                       max_retries=1, backoff=0.01, timeout=5, bootstrap=0)
        assert sum(judge.received.values()) == 3


KILLED_RUN = """
import sys
from lpjax.evaluation import judge_pairwise
from tests.integration.test_judge_http import QUESTIONS, A, B, OPTIONS
judge_pairwise(sys.argv[1], "judge-model", QUESTIONS, A, B, sys.argv[2], **{**OPTIONS, "concurrency": 1})
"""


def _cached(workdir):
    root = os.path.join(workdir, "judge_cache")
    return sum(len(files) for _, _, files in os.walk(root)) if os.path.isdir(root) else 0


def test_killed_run_resumes_sending_each_request_once(tmp_path):
    workdir = str(tmp_path)
    with ScriptedJudge(script, hold_after=5) as judge:
        env = {**os.environ, "PYTHONPATH": REPO}
        proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, judge.base_url, workdir], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not (judge.held and _cached(workdir) == 5):
                assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it was killed"
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        # Killed while its sixth request waited: five replies kept, nothing answered since.
        assert _cached(workdir) == 5 and sum(judge.answered.values()) == 5
        judge.hold_after = None
        judge.release()
        resumed = judge_pairwise(judge.base_url, "judge-model", QUESTIONS, A, B, workdir, **OPTIONS)
        assert resumed.requests == {"total": 16, "sent": 11, "cached": 5}
        rerun = judge_pairwise(judge.base_url, "judge-model", QUESTIONS, A, B, workdir, **OPTIONS)
        assert rerun.requests["sent"] == 0
        # Killed, resumed and rerun together: every request answered exactly once.
        assert len(judge.answered) == 16 and set(judge.answered.values()) == {1}
    check_hand_computation(resumed)


def test_a_refused_request_fails_at_once_in_one_line(tmp_path):
    with ScriptedJudge(lambda *a: ("status", 401, {})) as judge:
        with pytest.raises(JudgeError) as e:
            judge_pairwise(judge.base_url, "m", QUESTIONS[:2], A[:2], B[:2], str(tmp_path), concurrency=1,
                           backoff=0.01)
        assert sum(judge.received.values()) == 1  # not retried, and the rest not sent
    assert "HTTP 401" in str(e.value) and "\n" not in str(e.value)


def test_an_unreachable_endpoint_is_one_line_after_bounded_retries(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    with pytest.raises(JudgeError) as e:
        judge_pairwise(f"http://127.0.0.1:{port}/v1", "m", QUESTIONS[:1], A[:1], B[:1], str(tmp_path),
                       max_retries=2, backoff=0.01)
    assert "no reply after 3 attempts" in str(e.value) and "refused" in str(e.value).lower()
    assert "\n" not in str(e.value)


def test_a_missing_api_key_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("LPJAX_NO_SUCH_KEY", raising=False)
    with pytest.raises(JudgeError, match="LPJAX_NO_SUCH_KEY is not set"):
        judge_pairwise("http://127.0.0.1:9/v1", "m", ["q"], ["a"], ["b"], str(tmp_path),
                       api_key_env="LPJAX_NO_SUCH_KEY")


def test_mismatched_lengths_are_refused(tmp_path):
    with pytest.raises(ValueError, match="one answer per prompt"):
        judge_pairwise("http://127.0.0.1:9/v1", "m", ["q", "r"], ["a"], ["b", "c"], str(tmp_path))
