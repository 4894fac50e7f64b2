"""The run's workdir: stages that are skipped when their output exists for the
same inputs and config, a metrics log, and run metadata.

A stage's key hashes its own config and the keys of the stages it reads, so a
changed config reruns that stage and, through the keys, every stage after it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

import jax
from absl import logging

from lpjax import atomic

PACKAGES = ("lpjax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "transformers", "tokenizers",
            "datasets", "tensorstore", "numpy")


def stable_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_hash(path: str) -> str:
    """sha256 of a file, or of every file under a directory (names included)."""
    h = hashlib.sha256()
    paths = [path] if os.path.isfile(path) else sorted(
        os.path.join(d, f) for d, _, files in os.walk(path) for f in files
    )
    for p in paths:
        h.update(os.path.relpath(p, path).encode())
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


class Workdir:
    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def _append(self, name: str, record: dict) -> None:
        # Every process writes the same whole files (atomically, so hosts with
        # their own disks each get a complete workdir, and on a shared one the
        # copies are identical); appended logs come from process 0 alone.
        if jax.process_index() != 0:
            return
        with open(self.path(name), "a") as f:
            f.write(json.dumps(record, default=str) + "\n")

    def log_metrics(self, record: dict) -> None:
        self._append("metrics.jsonl", {"time": time.time(), **record})

    def run_stage(self, name: str, inputs: dict, fn: Callable[[str], dict]) -> dict:
        """Run fn(stage_dir) -> summary unless a finished run with the same key
        exists. A stage left unfinished with the same key is resumed (fn finds
        its checkpoints); one with another key is wiped first."""
        key = stable_hash(inputs)
        directory = self.path(name)
        marker = os.path.join(directory, "stage.json")
        state = {}
        if os.path.exists(marker):
            with open(marker) as f:
                state = json.load(f)
        if state.get("key") == key and state.get("done"):
            logging.info("stage %s: up to date (key %s), skipped", name, key)
            self._append("stages.jsonl", {"stage": name, "key": key, "action": "skipped", "time": time.time()})
            return state["summary"]
        if os.path.isdir(directory) and state.get("key") != key:
            shutil.rmtree(directory)
        os.makedirs(directory, exist_ok=True)
        atomic.write_json(marker, {"key": key, "done": False, "inputs": inputs})
        logging.info("stage %s: running (key %s)", name, key)
        t0 = time.time()
        summary = {"key": key, **fn(directory)}
        seconds = time.time() - t0
        atomic.write_json(marker, {"key": key, "done": True, "inputs": inputs, "summary": summary, "seconds": seconds})
        self._append("stages.jsonl", {"stage": name, "key": key, "action": "ran", "seconds": seconds, "time": time.time()})
        return summary


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_revision() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        rev = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if rev.returncode:
        return "unknown"
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
