"""The answers and judge config sections: a setting that cannot work stops
the run before any stage, with one line naming the field."""
import importlib
import json

import pytest

from lpjax.config import ConfigError
from lpjax.validate import validate


@pytest.fixture
def cfg(tmp_path):
    path = tmp_path / "vicuna.jsonl"
    path.write_text(json.dumps({"question_id": 1, "text": "How?"}) + "\n")
    c = importlib.import_module("configs.lp_app").get_config("micro")
    c.evaluate.answers.test_sets = (f"vicuna={path}",)
    return c


def judge_on(c, **fields):
    j = c.evaluate.judge
    j.backend, j.base_url, j.model = "openai", "http://127.0.0.1:8080/v1", "m"
    for k, v in fields.items():
        setattr(j, k, v)
    return c


def test_answers_and_judging_validate(cfg, monkeypatch):
    validate(cfg)
    monkeypatch.setenv("LPJAX_TEST_KEY", "sk")
    validate(judge_on(cfg, api_key_env="LPJAX_TEST_KEY", against=("random", "full")))


def refused(c, field, needle, num_devices=1):
    with pytest.raises(ConfigError) as e:
        validate(c, num_devices)
    assert e.value.field == field and needle in e.value.message and "\n" not in str(e.value)


@pytest.mark.parametrize("spec,field,needle", [
    ("vicuna", "evaluate.answers.test_sets[0]", "expected name=path"),
    ("mine=/nonexistent.jsonl#prompt=q", "evaluate.answers.test_sets[0]", "no such file"),
    ("mine=/x.jsonl", "evaluate.answers.test_sets[0]", "not a known set"),
])
def test_bad_test_sets(cfg, spec, field, needle):
    cfg.evaluate.answers.test_sets = (spec,)
    refused(cfg, field, needle)


def test_a_set_named_twice(cfg):
    cfg.evaluate.answers.test_sets *= 2
    refused(cfg, "evaluate.answers.test_sets[1]", "used twice")


def test_answer_lengths_and_batches(cfg):
    cfg.evaluate.answers.max_len = cfg.evaluate.answers.max_new_tokens
    refused(cfg, "evaluate.answers.max_len", "no room for a prompt")
    cfg.evaluate.answers.max_len, cfg.evaluate.answers.batch_size = 1024, 12
    refused(cfg, "evaluate.answers.batch_size", "data x fsdp = 8", num_devices=8)


def test_answers_need_targets(cfg):
    cfg.target.enabled = cfg.evaluate.enabled = False
    refused(cfg, "evaluate.answers.test_sets", "target.enabled")


@pytest.mark.parametrize("fields,field,needle", [
    ({"backend": "gpt4"}, "evaluate.judge.backend", "not one of"),
    ({"base_url": "127.0.0.1:8080"}, "evaluate.judge.base_url", "not an http(s) URL"),
    ({"model": ""}, "evaluate.judge.model", "needs a model"),
    ({"api_key_env": "LPJAX_NO_SUCH_KEY"}, "evaluate.judge.api_key_env", "LPJAX_NO_SUCH_KEY is not set"),
    ({"against": ("clust_rand",)}, "evaluate.judge.against", "not among select.baselines"),
    ({"concurrency": 0}, "evaluate.judge.concurrency", "at least 1"),
    ({"timeout": 0.0}, "evaluate.judge.timeout", "positive"),
    ({"max_retries": -1}, "evaluate.judge.max_retries", "at least 0"),
    ({"temperature": -0.5}, "evaluate.judge.temperature", "at least 0"),
    ({"backend": "lpjax", "model": "/nonexistent/ckpt"}, "evaluate.judge.model", "not a checkpoint directory"),
])
def test_bad_judge_settings(cfg, monkeypatch, fields, field, needle):
    monkeypatch.delenv("LPJAX_NO_SUCH_KEY", raising=False)
    refused(judge_on(cfg, **fields), field, needle)


def test_judging_needs_answers(cfg):
    cfg.evaluate.answers.test_sets = ()
    refused(judge_on(cfg), "evaluate.judge.backend", "needs answers")


def test_answer_and_judge_settings_leave_the_held_out_evaluation_alone(cfg):
    from lpjax.stages import answers, evaluate

    before, answers_before = evaluate.STAGE.config_inputs(cfg), answers.STAGE.config_inputs(cfg)
    judge_on(cfg)
    cfg.evaluate.answers.max_new_tokens = 7
    assert evaluate.STAGE.config_inputs(cfg) == before and answers.STAGE.config_inputs(cfg) != answers_before
    cfg.evaluate.max_new_tokens = 3
    assert evaluate.STAGE.config_inputs(cfg) != before
