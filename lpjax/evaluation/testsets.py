"""Instruction test sets (the prompts of Vicuna, Koala, WizardLM,
Self-Instruct, LIMA, or any JSON/JSONL file) as records of one shape.

Each set names where its prompt lives: a field path such as ``text`` or
``instances[0].input``. A set is given as a spec string
``name=path[#prompt=F,input=F,reference=F,id=F]``: the five known sets need
only ``name=path``. A prompt field that holds a list of strings gives its
first element (LIMA's ``conversations`` is such a list in its Hugging Face
release and a plain string in the copy the literature evaluates on).
Records without an id field are known by their position (1-based).
"""
from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from typing import Any

from lpjax.data.formats import DataError, read_raw


@dataclasses.dataclass(frozen=True)
class Fields:
    """Where a set's record keeps each part (field paths; "" = absent)."""

    prompt: str
    input: str = ""
    reference: str = ""
    id: str = ""


# The literature's five sets (AlpaGasus, Cherry_LLM, arXiv 2402.10430), as
# their files ship.
KNOWN: dict[str, Fields] = {
    "vicuna": Fields(prompt="text", id="question_id"),
    "koala": Fields(prompt="prompt", id="id"),
    "wizardlm": Fields(prompt="Instruction", id="idx"),
    "sinstruct": Fields(prompt="instruction", input="instances[0].input", reference="instances[0].output", id="id"),
    "lima": Fields(prompt="conversations"),
}


@dataclasses.dataclass(frozen=True)
class TestItem:
    """One test prompt: its id within its set, the instruction, its input
    ("" if none), the reference answer (None if the set has none), and the set."""

    __test__ = False  # not a pytest class

    id: str
    instruction: str
    input: str
    reference: str | None
    set: str

    def record(self) -> dict:
        """The record the prompt template renders (lpjax.data.template.build_prompt)."""
        return {"instruction": self.instruction, "input": self.input}

    def question(self) -> str:
        """The question as a judge sees it: the instruction, then its input."""
        return self.instruction if not self.input else f"{self.instruction}\n\n{self.input}"


@dataclasses.dataclass(frozen=True)
class TestSetSpec:
    __test__ = False

    name: str
    path: str
    fields: Fields


_PART = re.compile(r"([^.\[\]]+)((?:\[\d+\])*)")
_KEYS = {f.name for f in dataclasses.fields(Fields)}


def parse_spec(spec: str) -> TestSetSpec:
    """``name=path`` or ``name=path#prompt=F,input=F,reference=F,id=F``;
    ValueError naming what is wrong."""
    name, eq, rest = spec.partition("=")
    name = name.strip()
    if not eq or not name or not rest:
        raise ValueError(f"{spec!r}: expected name=path[#prompt=FIELD,...]")
    path, _, options = rest.partition("#")
    given: dict[str, str] = {}
    for item in filter(None, (o.strip() for o in options.split(","))):
        key, eq, value = item.partition("=")
        if not eq or key not in _KEYS or not value:
            raise ValueError(f"{spec!r}: {item!r} is not one of {', '.join(sorted(_KEYS))}=FIELD")
        _check_path(value, spec)
        given[key] = value
    if name in KNOWN:
        fields = dataclasses.replace(KNOWN[name], **given)
    elif "prompt" in given:
        fields = Fields(**given)
    else:
        raise ValueError(f"{spec!r}: {name!r} is not a known set ({', '.join(KNOWN)}); name its prompt field "
                         "(name=path#prompt=FIELD)")
    return TestSetSpec(name, path, fields)


def _check_path(path: str, spec: str) -> None:
    if not all(_PART.fullmatch(p) for p in path.split(".")):
        raise ValueError(f"{spec!r}: {path!r} is not a field path (e.g. instances[0].input)")


def get_field(record: Any, path: str) -> Any:
    """The value at a field path; KeyError naming the missing step."""
    value = record
    for part in path.split("."):
        name, indices = _PART.fullmatch(part).groups()
        if not isinstance(value, dict) or name not in value:
            raise KeyError(f"field '{path}' is missing")
        value = value[name]
        for index in map(int, re.findall(r"\d+", indices)):
            if not isinstance(value, list) or index >= len(value):
                raise KeyError(f"field '{path}' is missing (no element {index})")
            value = value[index]
    return value


def _text(record: dict, path: str, what: str) -> str:
    value = get_field(record, path)
    if what == "prompt" and isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        value = value[0]
    if not isinstance(value, str):
        raise ValueError(f"{what} field '{path}' must be a string, got {type(value).__name__}")
    return value


def _item(raw: Any, n: int, spec: TestSetSpec) -> TestItem:
    if not isinstance(raw, dict):
        raise ValueError(f"expected an object, got {type(raw).__name__}")
    f = spec.fields
    instruction = _text(raw, f.prompt, "prompt")
    if not instruction.strip():
        raise ValueError(f"prompt field '{f.prompt}' is empty")
    # A record may lack an optional part (an instance without input); a
    # present one must be text.
    optional = {}
    for what in ("input", "reference"):
        path = getattr(f, what)
        try:
            optional[what] = _text(raw, path, what) if path else None
        except KeyError:
            optional[what] = None
    try:
        ident = str(get_field(raw, f.id)) if f.id else str(n)
    except KeyError:
        ident = str(n)
    return TestItem(ident, instruction, optional["input"] or "", optional["reference"], spec.name)


def load_test_set(spec: TestSetSpec | str) -> list[TestItem]:
    """The records of one set; a bad record raises DataError(path, reason, record number)."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    items: list[TestItem] = []
    seen: dict[str, int] = {}
    for n, raw in enumerate(read_raw(spec.path), start=1):
        try:
            item = _item(raw, n, spec)
        except (KeyError, ValueError) as e:
            raise DataError(spec.path, e.args[0] if isinstance(e, KeyError) else str(e), n) from None
        if item.id in seen:
            raise DataError(spec.path, f"id {item.id!r} repeats record {seen[item.id]}", n)
        seen[item.id] = n
        items.append(item)
    return items


def load_test_sets(specs: Sequence[TestSetSpec | str]) -> list[TestItem]:
    """Every set's records, set after set, in file order."""
    return [item for spec in specs for item in load_test_set(spec)]


def known_specs(directory: str, names: Sequence[str] = tuple(KNOWN)) -> tuple[str, ...]:
    """Spec strings for the known sets in a directory under their usual file
    names (``<name>_test_set.jsonl``, as AlpaGasus and Cherry_LLM ship them)."""
    return tuple(f"{n}={os.path.join(directory, f'{n}_test_set.jsonl')}" for n in names)
