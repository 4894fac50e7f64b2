"""The pairwise judge's prompt and the parsing of its reply: the protocol of
Vicuna's GPT-4 review, as AlpaGasus, Cherry_LLM and arXiv 2402.10430 run it.

The judge sees the question, two answers labelled Assistant 1 and 2, and is
asked for two 1-10 scores on the first line of its reply. The text is fixed;
any change to it must change PROMPT_VERSION, which is part of every cached
request's key (pairwise.py), so replies to another prompt are never reused.
"""
from __future__ import annotations

import math

# v1: the literature's text verbatim. The question is the instruction, then
# its input after a blank line (Cherry_LLM sends the instruction alone, which
# leaves Self-Instruct's judge without the text the answers are about).
PROMPT_VERSION = "vicuna-pairwise-v1"

SYSTEM_PROMPT = "You are a helpful and precise assistant for checking the quality of the answer."

CRITERIA = (
    "We would like to request your feedback on the performance of two AI assistants in response to the user "
    "question displayed above.\nPlease rate the helpfulness, relevance, accuracy, level of details of their "
    "responses. Each assistant receives an overall score on a scale of 1 to 10, where a higher score indicates "
    "better overall performance.\nPlease first output a single line containing only two values indicating the "
    "scores for Assistant 1 and 2, respectively. The two scores are separated by a space. In the subsequent line, "
    "please provide a comprehensive explanation of your evaluation, avoiding any potential bias and ensuring that "
    "the order in which the responses were presented does not affect your judgment."
)

USER_TEMPLATE = (
    "[Question]\n{question}\n\n"
    "[The Start of Assistant 1's Answer]\n{answer_1}\n\n[The End of Assistant 1's Answer]\n\n"
    "[The Start of Assistant 2's Answer]\n{answer_2}\n\n[The End of Assistant 2's Answer]\n\n"
    "[System]\n{criteria}\n\n"
)

SCORE_RANGE = (0.0, 10.0)


def messages(question: str, answer_1: str, answer_2: str) -> list[dict[str, str]]:
    """The chat messages of one judgement (system, user)."""
    # str.format parses only the template, so braces in answers are safe.
    user = USER_TEMPLATE.format(question=question, answer_1=answer_1, answer_2=answer_2, criteria=CRITERIA)
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def parse_scores(reply: str) -> tuple[float, float] | None:
    """The two scores on the reply's first line, or None if it holds anything else.

    The literature's rule (first line, commas as spaces, exactly two numbers),
    made strict where it was silent: leading blank lines and repeated spaces
    are allowed, but a score that is not a finite number in [0, 10] makes
    the reply unparsed. (The anchors score an unparsed reply as -1, -1,
    which their verdict rule then counts as a tie.)"""
    lines = (reply or "").strip().splitlines()
    if not lines:
        return None
    parts = lines[0].replace(",", " ").split()
    if len(parts) != 2:
        return None
    try:
        scores = tuple(float(p) for p in parts)
    except ValueError:
        return None
    low, high = SCORE_RANGE
    if not all(math.isfinite(s) and low <= s <= high for s in scores):
        return None
    return scores
