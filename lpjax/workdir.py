"""Stages that declare their inputs, and the content-addressed store they write to.

A ``Stage`` states which config fields it reads, which upstream stages'
outputs it reads, and which input files it depends on. Its key is a hash of
exactly those: the declared config values, the upstream keys, the files'
contents and the stage's parameters (e.g. the indices of the subset a target
is tuned on). Its body receives a view of the config that refuses any field
the declaration lacks (``UndeclaredRead``), so a key can never miss an input
and silently reuse stale output.

Outputs are content-addressed: ``<store>/<stage>/<key>/`` holds the output
of one set of inputs and is never overwritten by another, and
``<workdir>/<stage>`` is a symbolic link to the one the latest run used. Two
settings that share a probe share its directory; changing
``select.percent`` and back finds both selections still there.

A directory's ``stage.json`` says whether the stage finished. An unfinished
one is resumed (its body finds its own checkpoints); a finished one is
skipped.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib import metadata
from typing import Any

import jax
from absl import logging

from lpjax import atomic, faults
from lpjax.config import get_path
from lpjax.errors import UserError

PACKAGES = ("lpjax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "transformers", "tokenizers",
            "datasets", "tensorstore", "numpy")


class UndeclaredRead(AttributeError):
    """A stage body read a config field its declaration lacks (a programming error)."""


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


class ConfigView:
    """The config as a stage body sees it: declared fields only.

    A declared path gives the real value (a whole section when the section
    is declared); a section some declared path lies under gives another
    view; anything else raises UndeclaredRead."""

    def __init__(self, obj: Any, allowed: frozenset[str], stage: str, prefix: str = ""):
        self._obj, self._allowed, self._stage, self._prefix = obj, allowed, stage, prefix

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        path = self._prefix + name
        value = getattr(self._obj, name)
        if any(path == a or path.startswith(a + ".") for a in self._allowed):
            return value
        if any(a.startswith(path + ".") for a in self._allowed):
            return ConfigView(value, self._allowed, self._stage, path + ".")
        raise UndeclaredRead(f"stage {self._stage!r} reads config field {path!r}, which its declaration lacks "
                             "(add it to the stage's reads, or to runtime if it cannot change the output)")

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            return super().__setattr__(name, value)
        raise AttributeError(f"stage {self._stage!r} may not change the config")


@dataclasses.dataclass(frozen=True)
class Stage:
    """A pipeline stage and what its output depends on.

    reads: dotted config paths the output depends on (a section stands for
    all its fields). runtime: config paths the body may read that cannot
    change its output (the mesh), left out of the key. needs: the upstream
    stages whose outputs it reads, by role. files: the input files (or
    directories) whose contents the output depends on. format: the stored
    output's layout, part of the key when set. run(ctx) -> summary
    (a JSON-able dict kept in stage.json)."""

    name: str
    run: Callable[["StageContext"], dict]
    reads: tuple[str, ...]
    needs: tuple[str, ...] = ()
    runtime: tuple[str, ...] = ()
    files: Callable[[Any], Sequence[str]] = lambda cfg: ()
    # The layout of what the stage stores (weights, optimizer states:
    # lpjax/training/checkpoint.py STORE_FORMAT); a new layout gets new keys,
    # so outputs in an old one are never read.
    format: str | None = None

    def config_inputs(self, cfg: Any) -> dict[str, Any]:
        return {path: _plain(get_path(cfg, path)) for path in sorted(self.reads)}


def _plain(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


@dataclasses.dataclass(frozen=True)
class StageResult:
    """A finished stage: its key, output directory and summary."""

    name: str
    key: str
    dir: str
    summary: dict


Inputs = Mapping[str, "StageResult | Mapping[str, StageResult] | None"]


@dataclasses.dataclass(frozen=True)
class StageContext:
    """What a stage body gets: its config view, output directory, upstream
    results (only those it declared), parameters, and the metrics log."""

    cfg: Any
    out: str
    inputs: Inputs
    params: Mapping[str, Any]
    log_metrics: Callable[[dict], None]


def _input_keys(inputs: Inputs) -> dict:
    def key(v):
        if v is None:
            return None
        if isinstance(v, StageResult):
            return v.key
        return {k: key(x) for k, x in sorted(v.items())}

    return {k: key(v) for k, v in sorted(inputs.items())}


def _digest(value: Any) -> Any:
    # Long lists (a subset's indices) are kept in stage.json as their hash.
    text = json.dumps(value, sort_keys=True, default=str)
    return value if len(text) <= 200 else {"sha256": stable_hash(value), "length": len(value)}


def stage_key(stage: Stage, cfg: Any, inputs: Inputs, params: Mapping[str, Any], name: str) -> tuple[str, dict]:
    """(key, description) of ``stage``'s output for these inputs. A function
    of its own, so that a sweep's dry run (launch/plan.py) computes the keys a
    run would use without running anything."""
    described = {
        "stage": name,
        "config": stage.config_inputs(cfg),
        "needs": _input_keys(inputs),
        "files": {p: file_hash(p) for p in stage.files(cfg)},
        "params": dict(params),
    }
    if stage.format is not None:  # absent otherwise, so other stages keep their keys
        described["format"] = stage.format
    return stable_hash(described), {**described, "params": {k: _digest(v) for k, v in params.items()}}


class Workdir:
    """A run's directory: pointers to the stage outputs it used, run.json,
    the logs, and (by default) the store those outputs live in."""

    def __init__(self, root: str, store: str = ""):
        self.root = os.path.abspath(root)
        self.store = os.path.abspath(store) if store else os.path.join(self.root, "store")
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

    def key(self, stage: Stage, cfg: Any, inputs: Inputs, params: Mapping[str, Any], name: str) -> tuple[str, dict]:
        return stage_key(stage, cfg, inputs, params, name)

    def run(self, stage: Stage, cfg: Any, inputs: Inputs | None = None, params: Mapping[str, Any] | None = None,
            name: str | None = None) -> StageResult:
        """Run ``stage`` unless the store holds its finished output for these
        inputs; either way point ``<workdir>/<name>`` at that output."""
        inputs, params, name = dict(inputs or {}), dict(params or {}), name or stage.name
        if set(inputs) != set(stage.needs):
            raise TypeError(f"stage {name!r} declares needs {sorted(stage.needs)}, got inputs {sorted(inputs)}")
        key, described = self.key(stage, cfg, inputs, params, name)
        directory = os.path.join(self.store, name, key)
        # One process: a lock, for runs that share a store. Several processes
        # of one run must enter the stage together (its collectives), so no lock.
        lock = _locked(directory + ".lock") if jax.process_count() == 1 else contextlib.nullcontext()
        with lock:
            state = _read_state(directory)
            if state.get("done"):
                logging.info("stage %s: up to date (key %s), skipped", name, key)
                action, summary = "skipped", state["summary"]
            else:
                if state and jax.process_count() == 1:
                    _remove_leftovers(directory)
                os.makedirs(directory, exist_ok=True)
                atomic.write_json(os.path.join(directory, "stage.json"), {"key": key, "done": False, **described})
                self._point(name, directory)  # progress (checkpoints, logs) is visible where the output will be
                logging.info("stage %s: running (key %s)%s", name, key, " (resuming)" if state else "")
                t0 = time.time()
                view = ConfigView(cfg, frozenset(stage.reads + stage.runtime), name)
                ctx = StageContext(view, directory, inputs, params, self.log_metrics)
                faults.point(f"stage:{name}")
                try:
                    summary = stage.run(ctx)
                except UserError:
                    # Bad input the preflight check could not see: a stage that
                    # had not started before leaves nothing behind (a resumed
                    # one keeps its checkpoints). The log says it failed.
                    if not state:
                        self._discard(name, directory)
                    self._append("stages.jsonl", {"stage": name, "key": key, "action": "failed", "time": time.time()})
                    raise
                seconds = time.time() - t0
                faults.point(f"stage-end:{name}")
                atomic.write_json(os.path.join(directory, "stage.json"),
                                  {"key": key, "done": True, **described, "summary": summary, "seconds": seconds})
                action = "ran"
        self._point(name, directory)
        record = {"stage": name, "key": key, "action": action, "time": time.time()}
        if action == "ran":
            record["seconds"] = seconds
        self._append("stages.jsonl", record)
        return StageResult(name, key, directory, summary)

    def unlink_others(self, current: Mapping[str, Any]) -> None:
        """Remove the workdir's links to stage outputs this run did not use
        (a subset or stage of an earlier setting; the outputs stay in the
        store), so the workdir shows this run alone."""
        for entry in os.scandir(self.root):
            links = [entry] if entry.is_symlink() else (
                [e for e in os.scandir(entry.path) if e.is_symlink()] if entry.is_dir() and entry.name != "store"
                else [])
            for link in links:
                name = os.path.relpath(link.path, self.root)
                if name not in current and not name.endswith(".tmp"):
                    with contextlib.suppress(FileNotFoundError):  # another process of this run was first
                        os.unlink(link.path)

    def _discard(self, name: str, directory: str) -> None:
        link = self.path(name)
        if os.path.islink(link) and os.path.realpath(link) == os.path.realpath(directory):
            os.unlink(link)
        shutil.rmtree(directory, ignore_errors=True)

    def _point(self, name: str, target: str) -> None:
        """Atomically (re)point <workdir>/<name> at target."""
        link = self.path(name)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if os.path.isdir(link) and not os.path.islink(link):
            raise FileExistsError(f"{link} is a directory, not lpjax's link to a stage output: a workdir from an "
                                  "older lpjax? Use a new --config.workdir")
        tmp = f"{link}.{uuid.uuid4().hex[:8]}.tmp"
        os.symlink(os.path.relpath(target, os.path.dirname(link)), tmp)
        os.replace(tmp, link)


def _remove_leftovers(directory: str) -> None:
    """The temporary files and directories a killed run left in an unfinished
    stage's output (lpjax.atomic names them ``.<name>.<random>.tmp``/``.old``).
    Never read, only clutter; removed under the stage's lock, so no live
    writer owns them."""
    for root, dirs, files in os.walk(directory):
        for name in list(dirs):
            if name.startswith(".") and name.endswith((".tmp", ".old")):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
                dirs.remove(name)
        for name in files:
            if name.startswith(".") and name.endswith(".tmp"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(root, name))


def _read_state(directory: str) -> dict:
    try:
        with open(os.path.join(directory, "stage.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    # Two runs that share a store (a sweep's points) and reach the same stage:
    # the second waits for the first, then finds its output done.
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_metadata(cfg_dict: dict) -> dict:
    return {"config": cfg_dict, "versions": package_versions(), "git_revision": git_revision(),
            "devices": [str(d) for d in jax.devices()]}


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
