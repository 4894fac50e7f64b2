"""Building a sweep's points from axes: each point is a dict of config
overrides ({"select.percent": 5.0, "seed": 1}). Pure functions.

    product({"seed": [1, 2, 3]}, {"select.percent": [1.0, 5.0]})   # 6 points
    zipped({"probe.model": [a, b], "probe.train.lr": [1e-3, 5e-4]})  # 2 points, side by side
    product(zipped(...), {"seed": [1, 2]}) + [{"select.metric": "p0"}]  # lists concatenate
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, Union

Override = dict[str, Any]
# An axis is a list of override dicts, or {path: [values]} for one field.
Axis = Union[Sequence[Mapping[str, Any]], Mapping[str, Sequence[Any]]]


def _as_points(axis: Axis) -> list[Override]:
    if isinstance(axis, Mapping):
        if len(axis) != 1:
            # {a: [..], b: [..]} is ambiguous (product or zip?): say which.
            raise ValueError(f"an axis given as a dict names one field, got {sorted(axis)}: "
                             "use product(...) or zipped(...) for several")
        (path, values), = axis.items()
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise ValueError(f"axis {path!r}: expected a list of values, got {values!r}")
        return [{path: v} for v in values]
    return [dict(p) for p in axis]


def _merge(parts: Sequence[Mapping[str, Any]]) -> Override:
    out: Override = {}
    for part in parts:
        for path, value in part.items():
            if path in out and out[path] != value:
                raise ValueError(f"{path!r} is set twice in one point ({out[path]!r} and {value!r})")
            out[path] = value
    return out


def product(*axes: Axis) -> list[Override]:
    """Every combination, the last axis varying fastest."""
    return [_merge(combo) for combo in itertools.product(*(_as_points(a) for a in axes))]


def zipped(fields: Mapping[str, Sequence[Any]]) -> list[Override]:
    """Fields that move together: the i-th point takes the i-th value of each."""
    lengths = {path: len(values) for path, values in fields.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"zipped axes differ in length: {lengths}")
    n = next(iter(lengths.values()), 0)
    return [{path: values[i] for path, values in fields.items()} for i in range(n)]

