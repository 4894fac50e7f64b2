"""Pairwise judging of two models' answers, as the data-selection
literature evaluates (AlpaGasus, Cherry_LLM, arXiv 2402.10430), and the
parts its scripts lack.

``judge_pairwise`` (pairwise.py) asks a judge to score both answers to
every question twice, in both orders (protocol.py), turns the scores into
per-question verdicts and figures (stats.py), and keeps every reply in a
request cache under ``workdir`` (cache.py): a killed run resumes without
repeating a request, a rerun sends nothing. The judge is an
OpenAI-compatible endpoint or a local checkpoint (backends.py), named with
its sampling and retry settings by a ``JudgeSettings`` (settings.py). It
needs no launcher, JAX or config: tools can call it directly.

    from lpjax.evaluation.judge import JudgeSettings, judge_pairwise

    settings = JudgeSettings(base_url="http://127.0.0.1:8080/v1", model="gpt-4o", api_key_env="OPENAI_API_KEY")
    r = judge_pairwise(prompts, answers_a, answers_b, "runs/judging", settings)
    # or, the same judge:
    r = judge_pairwise("http://127.0.0.1:8080/v1", "gpt-4o", prompts, answers_a, answers_b, "runs/judging",
                       api_key_env="OPENAI_API_KEY")
"""
from lpjax.evaluation.judge.backends import JudgeError
from lpjax.evaluation.judge.pairwise import JudgeResult, judge_pairwise
from lpjax.evaluation.judge.settings import JudgeSettings

__all__ = ["JudgeError", "JudgeResult", "JudgeSettings", "judge_pairwise"]
