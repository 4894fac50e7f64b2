"""How good a tuned target is: decoding (generate.py), held-out metrics
(heldout.py), answers to instruction test sets (testsets.py, answers.py)
and pairwise judging of two targets' answers (judge.py)."""
from lpjax.evaluation.judge import JudgeError, JudgeResult, judge_pairwise

__all__ = ["JudgeError", "JudgeResult", "judge_pairwise"]
