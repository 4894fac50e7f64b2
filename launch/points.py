"""A sweep file read into points: each point's name, overrides, workdir and
the lpjax.launch command line that runs it. Pure apart from loading the file.

A sweep file is a Python module with ``def sweep() -> list[dict]`` (dicts of
config overrides, built with launch.axes) and optionally ``CONFIG``, the
config file used when --config is not given.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Point:
    """One pipeline run of a sweep."""

    index: int
    name: str
    overrides: dict[str, Any]
    workdir: str
    store: str
    config: str  # configs/x.py[:variant]

    def args(self) -> list[str]:
        """The flags of ``python -m lpjax.launch`` for this point."""
        return ([f"--config={self.config}"] + [f"--config.{k}={format_value(v)}" for k, v in self.overrides.items()]
                + [f"--config.workdir={self.workdir}", f"--config.store={self.store}"])

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_sweep(path: str) -> tuple[list[dict[str, Any]], str | None]:
    """(the override dicts, the sweep file's CONFIG or None)."""
    spec = importlib.util.spec_from_file_location(f"lpjax_sweep_{abs(hash(os.path.abspath(path)))}", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"{path}: not a Python sweep file")
    if REPO not in sys.path:  # sweep files import launch.axes
        sys.path.insert(0, REPO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "sweep"):
        raise ValueError(f"{path}: defines no sweep() returning the points' overrides")
    overrides = list({json.dumps(o, sort_keys=True, default=str): dict(o) for o in module.sweep()}.values())
    # (Parts of a grid may overlap, e.g. the hard chunk of a chunk axis is the
    # main grid's point: the same overrides are one point.)
    if not overrides:
        raise ValueError(f"{path}: sweep() returned no points")
    for o in overrides:
        for key in o:
            if key in ("workdir", "store"):
                raise ValueError(f"{path}: a point sets {key!r}; the sweep assigns workdirs and the store")
    return overrides, getattr(module, "CONFIG", None)


def format_value(value: Any) -> str:
    """A value as ml_collections' config flags parse it back (tuples by
    ast.literal_eval, bools as True/False, strings as they are)."""
    if isinstance(value, (list, tuple)):
        # Strings in double quotes: the flag then needs no single quotes, which
        # keeps the shell quoting of emitted commands (launch/tpu.py) readable.
        items = [json.dumps(v) if isinstance(v, str) else repr(v) for v in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(value, float) and value.is_integer():
        return repr(value)  # "5.0": a float field stays a float either way
    return str(value)


def _short(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (list, tuple)):
        value = "+".join(map(str, value))
    text = str(value).rstrip("/")
    if "/" in text:  # a path: its last component names it well enough
        text = os.path.basename(text)
    text = re.sub(r"[^A-Za-z0-9._+-]", "_", text)
    if len(text) > 40:
        # A long value (a tuple of names) is cut on its own, with a hash of it,
        # so that the other fields, the seed among them, stay readable in the
        # name and points that differ only in the seed share the value's label.
        text = text[:31] + "-" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return text


def point_names(overrides: Sequence[Mapping[str, Any]]) -> list[str]:
    """Readable, stable directory names from the fields that vary across the
    sweep ("metric=lp_app__percent=5__seed=1"); a field is named by its last
    component unless two varying fields share it."""
    keys = list(dict.fromkeys(k for o in overrides for k in o))
    varying = [k for k in keys if len({json.dumps(o.get(k), sort_keys=True, default=str) for o in overrides}) > 1]
    last = [k.rsplit(".", 1)[-1] for k in varying]
    label = {k: (k if last.count(k.rsplit(".", 1)[-1]) > 1 else k.rsplit(".", 1)[-1]) for k in varying}
    names = []
    for o in overrides:
        name = "__".join(f"{label[k]}={_short(o[k])}" for k in varying if k in o) or "point"
        if len(name) > 120:
            name = name[:100] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
        names.append(name)
    seen: dict[str, int] = {}
    for i, n in enumerate(names):  # the same overrides twice: keep both, numbered
        seen[n] = seen.get(n, 0) + 1
        if names.count(n) > 1:
            names[i] = f"{n}__{seen[n]}"
    return names


def make_points(overrides: Sequence[Mapping[str, Any]], config: str, runs: str, store: str = "") -> list[Point]:
    """Every point's workdir is <runs>/points/<name>; all share one store
    (<runs>/store unless given), which is what makes common stages run once."""
    store = store or os.path.join(runs, "store")
    return [Point(i, name, dict(o), os.path.join(runs, "points", name), store, config)
            for i, (name, o) in enumerate(zip(point_names(overrides), overrides))]


def absolute_config(config: str) -> str:
    """configs/x.py:variant with the file made absolute (points run from anywhere)."""
    path, sep, variant = config.partition(":")
    return os.path.abspath(path) + sep + variant
