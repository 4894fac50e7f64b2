"""How good a tuned target is: decoding (generate.py), held-out metrics
(heldout.py), answers to instruction test sets (testsets.py, answers.py)
and pairwise judging of two targets' answers (the judge package)."""
from lpjax.evaluation.judge import JudgeError, JudgeResult, JudgeSettings, judge_pairwise

__all__ = ["JudgeError", "JudgeResult", "JudgeSettings", "judge_pairwise"]
