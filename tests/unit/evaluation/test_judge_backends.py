"""Pieces of the judge backends that need no server: Retry-After, the
request key, and the local judge's prompt."""
import email.utils
import sys
import time

import pytest

from lpjax.evaluation.judge.backends import JudgeError, LpjaxBackend, _retry_after
from lpjax.evaluation.judge.cache import RequestCache, request_key


def test_retry_after_seconds_or_date():
    assert _retry_after("3") == 3.0 and _retry_after("0.5") == 0.5 and _retry_after("-2") == 0.0
    assert _retry_after(None) is None and _retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= _retry_after(later) <= 31


def test_request_key_follows_every_field(tmp_path):
    fields = {"judge": "openai:m", "prompt_version": "v1", "question": "q", "input": "", "answer_1": "a",
              "answer_2": "b", "order": "ab", "sampling": {"temperature": 0.0, "max_tokens": 16}}
    key = request_key(fields)
    assert request_key(dict(reversed(list(fields.items())))) == key  # not the order of the dict
    for name, other in [("answer_1", "b"), ("order", "ba"), ("prompt_version", "v2"),
                        ("sampling", {"temperature": 0.0, "max_tokens": 17}), ("input", " ")]:
        assert request_key({**fields, name: other}) != key
    cache = RequestCache(str(tmp_path))
    assert cache.get(key) is None
    cache.put(key, {"reply": "8 7"})
    assert cache.get(key) == {"reply": "8 7"} and (tmp_path / key[:2] / f"{key}.json").exists()


class ChatTokenizer:
    chat_template = "{{ messages }}"


def test_a_chat_template_without_jinja2_is_a_clear_error(monkeypatch):
    backend = object.__new__(LpjaxBackend)
    backend.tok = ChatTokenizer()
    monkeypatch.setitem(sys.modules, "jinja2", None)  # import jinja2 now fails
    with pytest.raises(JudgeError, match="needs jinja2: pip install jinja2"):
        backend.prompt_ids([{"role": "user", "content": "hi"}])
