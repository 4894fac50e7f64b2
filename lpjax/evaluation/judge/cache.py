"""The judge's request cache: one small JSON file per request, named by the
sha256 of everything that decides the reply (judge, model, prompt version,
question, input, both answers in their order, sampling settings).

A reply is written (atomically) the moment it arrives, so a run killed
midway keeps every reply it got, and a resumed or repeated run sends only
the requests that have none: each request is sent once.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from lpjax import atomic


def request_key(fields: dict[str, Any]) -> str:
    text = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class RequestCache:
    """Replies under ``<directory>/<key[:2]>/<key>.json`` (two levels keep
    directories small with thousands of requests)."""

    def __init__(self, directory: str):
        self.directory = os.path.abspath(directory)

    def _path(self, key: str) -> str:
        return os.path.join(self.directory, key[:2], f"{key}.json")

    def get(self, key: str) -> dict | None:
        try:
            with open(self._path(key), encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def put(self, key: str, record: dict) -> None:
        atomic.write_json(self._path(key), record)
