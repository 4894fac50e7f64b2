"""Read instruction data from the formats it ships in, as records of one shape.

Every loader returns a list of dicts with string keys ``instruction``, ``input``
and ``output`` (all ``str``; ``input`` may be ``""``), followed by whatever other
keys the source had (``category``, ``kind``, ``messages`` ...), passed through as
metadata. Problems surface as one-line ``DataError``s naming the file and the
1-based record number, so a bad row in a 52K-record file can be found at once.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Callable

from lpjax import atomic

FIELDS = ("instruction", "input", "output")
FORMATS = ("auto", "alpaca", "jsonl", "dolly", "chat", "parquet", "hf_disk")

# Source field name for each normalized field; the mappers report errors under
# the source names, since those are what the user can find in the file.
_ALPACA_FIELDS = {"instruction": "instruction", "input": "input", "output": "output"}
_DOLLY_FIELDS = {"instruction": "instruction", "input": "context", "output": "response"}


class DataError(ValueError):
    """A problem in an input file, reported on one line as ``path: record N: reason``."""

    def __init__(self, path: str, reason: str, record: int | None = None):
        self.path = str(path)
        self.record = record
        self.reason = reason
        where = f"{self.path}: record {record}: " if record is not None else f"{self.path}: "
        # One line, whatever the reason quotes (JSON parser messages, repr of values).
        super().__init__((where + reason).replace("\r", "\\r").replace("\n", "\\n"))


# ----------------------------------------------------------------------------
# Containers: bytes on disk -> list of raw source records.


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as err:
        raise DataError(path, f"not UTF-8 text (byte {err.start}: {err.reason})") from None
    if not text.strip():
        raise DataError(path, "file is empty (no records)")
    return text


def _record_at(text: str, pos: int) -> int | None:
    """1-based index of the list element of ``text`` that holds offset ``pos``.

    Only called after a parse error, so re-walking the list element by element
    costs nothing on the happy path.
    """
    decoder = json.JSONDecoder()
    i = text.find("[")
    if i < 0 or i >= pos:
        return None
    i += 1
    n = 0
    while True:
        while i < len(text) and text[i] in " \t\r\n,":
            i += 1
        n += 1
        try:
            _, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            return n
        if end > pos:
            return n
        i = end


def _parse_json_list(path: str, text: str) -> list[Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        msg = f"invalid JSON at line {err.lineno} column {err.colno}: {err.msg}"
        raise DataError(path, msg, _record_at(text, err.pos)) from None
    if not isinstance(data, list):
        raise DataError(path, f"expected a JSON list of records, got {_type_name(data)}")
    return data


def _parse_jsonl(path: str, text: str) -> list[Any]:
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            # The decoder only saw this line, so its own line number is always 1.
            msg = f"invalid JSON at line {lineno} column {err.colno}: {err.msg}"
            raise DataError(path, msg, len(records) + 1) from None
    return records


def _read_json_list(path: str) -> list[Any]:
    return _parse_json_list(path, _read_text(path))


def _read_jsonl(path: str) -> list[Any]:
    return _parse_jsonl(path, _read_text(path))


def _read_json_auto(path: str) -> list[Any]:
    """A JSON list or JSON lines, told apart by the first character."""
    text = _read_text(path)
    parse = _parse_json_list if text.lstrip().startswith("[") else _parse_jsonl
    return parse(path, text)


def _read_parquet(path: str) -> list[Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as err:
        raise DataError(path, f"cannot read parquet: {err}") from None


def _read_hf_disk(path: str) -> list[Any]:
    import datasets

    try:
        ds = datasets.load_from_disk(path)
    except (FileNotFoundError, ValueError) as err:
        raise DataError(path, f"cannot load a datasets directory: {err}") from None
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds)
        if "train" in ds:
            ds = ds["train"]
        elif len(splits) == 1:
            ds = ds[splits[0]]
        else:
            raise DataError(path, f"DatasetDict has splits {splits} and no 'train'; load one split")
    return ds.to_list()


# ----------------------------------------------------------------------------
# Schemas: one raw record -> normalized record.


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _string_field(raw: dict, name: str, optional: bool, label: str | None = None) -> str:
    """The string under ``name``; an optional field may be absent or null (-> "")."""
    label = label or name
    value = raw.get(name)
    if value is None and optional:
        return ""
    if name not in raw:
        raise ValueError(f"field '{label}' is missing")
    if not isinstance(value, str):
        raise ValueError(f"field '{label}' must be a string, got {_type_name(value)}")
    return value


def _map_fields(raw: dict, fields: dict[str, str]) -> dict:
    record = {
        key: _string_field(raw, src, optional=(key == "input")) for key, src in fields.items()
    }
    renamed = set(fields.values())
    record.update((k, v) for k, v in raw.items() if k not in renamed and k not in record)
    return record


def _map_alpaca(raw: dict) -> dict:
    return _map_fields(raw, _ALPACA_FIELDS)


def _map_dolly(raw: dict) -> dict:
    return _map_fields(raw, _DOLLY_FIELDS)


def _map_chat(raw: dict) -> dict:
    """Last assistant turn -> output, the last user turn before it -> instruction.

    Every other turn before the answer (system prompt, older exchanges) is context
    and goes into ``input`` as ``role: content`` lines, in order, so the Alpaca
    template still sees the whole conversation. ``messages`` keeps the turns up to
    the answer so a chat template can render them natively.
    """
    messages = raw.get("messages")
    if "messages" not in raw:
        raise ValueError("field 'messages' is missing")
    if not isinstance(messages, list):
        raise ValueError(f"field 'messages' must be a list, got {_type_name(messages)}")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise ValueError(f"field 'messages[{i}]' must be an object, got {_type_name(msg)}")
        for key in ("role", "content"):
            _string_field(msg, key, optional=False, label=f"messages[{i}].{key}")
    roles = [m["role"] for m in messages]
    if "assistant" not in roles:
        raise ValueError("field 'messages' has no assistant turn")
    answer = len(roles) - 1 - roles[::-1].index("assistant")
    users = [i for i in range(answer) if roles[i] == "user"]
    if not users:
        raise ValueError("field 'messages' has no user turn before the last assistant turn")
    question = users[-1]
    context = [m for i, m in enumerate(messages[:answer]) if i != question]
    record = {
        "instruction": messages[question]["content"],
        "input": "\n".join(f"{m['role']}: {m['content']}" for m in context),
        "output": messages[answer]["content"],
    }
    record.update((k, v) for k, v in raw.items() if k not in record)
    record["messages"] = messages[:answer]
    return record


def _sniff_schema(first: Any) -> Callable[[dict], dict]:
    keys = first.keys() if isinstance(first, dict) else ()
    if "messages" in keys:
        return _map_chat
    if "context" in keys or "response" in keys:
        return _map_dolly
    return _map_alpaca


def _normalize(path: str, raws: list[Any], mapper: Callable[[dict], dict]) -> list[dict]:
    if not raws:
        raise DataError(path, "file is empty (no records)")
    records = []
    for n, raw in enumerate(raws, start=1):
        if not isinstance(raw, dict):
            raise DataError(path, f"expected an object, got {_type_name(raw)}", n)
        try:
            records.append(mapper(raw))
        except ValueError as err:
            raise DataError(path, str(err), n) from None
    return records


_EXPLICIT = {
    "alpaca": (_read_json_list, _map_alpaca),
    "jsonl": (_read_jsonl, _map_alpaca),
    "dolly": (_read_jsonl, _map_dolly),
    "chat": (_read_jsonl, _map_chat),
    "parquet": (_read_parquet, _map_alpaca),
    "hf_disk": (_read_hf_disk, _map_alpaca),
}


def load_records(path: str, format: str = "auto") -> list[dict]:
    """Load ``path`` as normalized records (see the module docstring).

    ``auto`` picks the container from the path (a directory is a ``datasets``
    save, ``.parquet`` is parquet, anything else is JSON: a list if it starts
    with ``[``, JSON lines otherwise) and the schema from the first record's
    keys (``messages`` -> chat, ``context``/``response`` -> Dolly, else Alpaca).
    """
    path = os.fspath(path)
    if format not in FORMATS:
        raise ValueError(f"unknown data format {format!r}; expected one of {FORMATS}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file or directory")
    if format != "auto":
        reader, mapper = _EXPLICIT[format]
        return _normalize(path, reader(path), mapper)
    if os.path.isdir(path):
        return _normalize(path, _read_hf_disk(path), _map_alpaca)
    if path.endswith(".parquet"):
        return _normalize(path, _read_parquet(path), _map_alpaca)
    raws = _read_json_auto(path)
    return _normalize(path, raws, _sniff_schema(raws[0] if raws else None))


def fingerprint(records: list[dict]) -> str:
    """sha256 of the records' instruction/input/output, blind to metadata and key order."""
    core = [{k: r[k] for k in FIELDS} for r in records]
    text = json.dumps(core, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    # surrogatepass: JSON sources may hold lone surrogates, which plain utf-8 rejects.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def write_records(records: list[dict], path: str) -> None:
    """Write a JSON list (``.json``) or JSON lines (``.jsonl``), atomically."""
    path = os.fspath(path)
    if path.endswith(".jsonl"):
        atomic.write_jsonl(path, records)
    elif path.endswith(".json"):
        atomic.write_json(path, records, indent=1)
    else:
        raise ValueError(f"{path}: write_records writes .json or .jsonl files")


def read_raw(path: str) -> list[Any]:
    """The raw records of a JSON list or JSON lines file, unmapped (for
    files whose fields a caller maps itself, such as test sets)."""
    return _read_json_auto(os.fspath(path))
