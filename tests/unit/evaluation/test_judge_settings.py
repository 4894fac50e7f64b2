"""JudgeSettings and judge_pairwise's two call forms, with a judge that
needs no server (a ``client``) or is never reached."""
import dataclasses

import pytest

from lpjax.config import JudgeConfig
from lpjax.evaluation import JudgeError, JudgeSettings, judge_pairwise
from lpjax.evaluation.judge.backends import OpenAIBackend, Reply, make_backend

PROMPTS = [{"id": str(i), "instruction": f"question {i}", "set": "s"} for i in range(4)]
A = [f"alpha {i}" for i in range(4)]
B = [f"beta {i}" for i in range(4)]


class Client:
    """Prefers Assistant 1 every time: a tie and a flip on every question."""
    identity, sampling = "fake:judge", {"temperature": 0.0, "max_tokens": 8}

    def __init__(self):
        self.sent = 0

    def run(self, requests, done):
        for r in requests:
            self.sent += 1
            done(r, Reply("7 5", {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}))


def test_both_call_forms_judge_alike(tmp_path):
    client = Client()
    old = judge_pairwise("http://127.0.0.1:9/v1", "m", PROMPTS, A, B, str(tmp_path), client=client, bootstrap=50)
    assert (old.win, old.tie, old.lose, old.flip_rate) == (0, 4, 0, 1.0) and client.sent == 8
    settings = JudgeSettings(base_url="http://127.0.0.1:9/v1", model="m", bootstrap=50)
    for new in (judge_pairwise(PROMPTS, A, B, str(tmp_path), settings, client=client),
                judge_pairwise(PROMPTS, A, B, str(tmp_path), settings=settings, client=client)):
        assert new.requests == {"total": 8, "sent": 0, "cached": 8}
        assert {**new.to_dict(), "requests": None} == {**old.to_dict(), "requests": None}
    # Keyword fields override the settings' in either form.
    assert judge_pairwise(PROMPTS, A, B, str(tmp_path), settings, client=client, bootstrap=0).ci95 is None
    assert old.ci95 is not None


def test_wrong_calls_are_type_errors(tmp_path):
    s = JudgeSettings()
    with pytest.raises(TypeError, match="not 3 positional"):
        judge_pairwise(PROMPTS, A, B)
    with pytest.raises(TypeError, match="given twice"):
        judge_pairwise(PROMPTS, A, B, str(tmp_path), s, settings=s)
    with pytest.raises(TypeError, match="not both"):
        judge_pairwise("http://h/v1", "m", PROMPTS, A, B, str(tmp_path), settings=s)
    with pytest.raises(TypeError, match="must be a JudgeSettings"):
        judge_pairwise(PROMPTS, A, B, str(tmp_path), {"model": "m"})
    with pytest.raises(TypeError, match="no_such_field"):
        judge_pairwise(PROMPTS, A, B, str(tmp_path), s, no_such_field=1)


def test_settings_from_the_config_section():
    j = JudgeConfig(backend="openai", base_url="http://h:1/v1", model="gpt", api_key_env="KEY", temperature=0.5,
                    max_tokens=64, concurrency=2, timeout=3.0, max_retries=1, bootstrap=10)
    s = JudgeSettings.from_config(j, seed=7)
    assert s == JudgeSettings(backend="openai", base_url="http://h:1/v1", model="gpt", api_key_env="KEY",
                              temperature=0.5, max_tokens=64, concurrency=2, timeout=3.0, max_retries=1,
                              bootstrap=10, seed=7)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.model = "other"


def test_backends_from_settings(monkeypatch):
    assert "sk-secret" not in repr(JudgeSettings(api_key="sk-secret"))
    b = make_backend(JudgeSettings(base_url="http://h:1/v1/", model="gpt", api_key="sk", temperature=0.3,
                                   max_tokens=9, concurrency=2, timeout=4.0, max_retries=1, backoff=0.5))
    assert isinstance(b, OpenAIBackend) and b.url == "http://h:1/v1/chat/completions" and b.api_key == "sk"
    assert (b.temperature, b.max_tokens, b.concurrency, b.timeout, b.max_retries, b.backoff) == (0.3, 9, 2, 4.0,
                                                                                                  1, 0.5)
    monkeypatch.setenv("LPJAX_TEST_KEY", "from-env")
    assert make_backend(JudgeSettings(base_url="http://h/v1", model="m", api_key_env="LPJAX_TEST_KEY")).api_key \
        == "from-env"
    monkeypatch.delenv("LPJAX_NO_SUCH_KEY", raising=False)
    with pytest.raises(JudgeError, match="LPJAX_NO_SUCH_KEY is not set"):
        make_backend(JudgeSettings(base_url="http://h/v1", model="m", api_key_env="LPJAX_NO_SUCH_KEY"))
    with pytest.raises(ValueError, match="unknown judge backend 'none'"):
        make_backend(JudgeSettings(backend="none"))
