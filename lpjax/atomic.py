"""Atomic writes: every output lpjax writes appears whole or not at all.

A file is written to a temporary name in its own directory, flushed to disk
(fsync), and renamed over the target; a directory is built under a temporary
name and swapped into place. A run killed at any moment therefore leaves
either the old output or the new one, never half of one, and a rerun can
trust whatever it finds.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

from lpjax import faults
from lpjax.errors import DiskError, disk_error


# mkstemp creates files readable by their owner alone; outputs get the
# permissions a plain open() would give them.
_UMASK = os.umask(0)
os.umask(_UMASK)


def _fsync_dir(directory: str) -> None:
    # The rename itself is durable only once the directory entry is on disk.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems do not fsync directories
    finally:
        os.close(fd)


def _disk_errors(path: str):
    """A full disk or a missing permission, as the one-line DiskError naming
    ``path`` (the launcher prints it; a rerun after fixing resumes)."""
    return _DiskErrors(path)


class _DiskErrors(contextlib.AbstractContextManager):
    def __init__(self, path: str):
        self.path = path

    def __exit__(self, kind, err, tb):
        if isinstance(err, OSError) and not isinstance(err, DiskError):
            converted = disk_error(err, self.path)
            if converted is not None:
                raise converted from None
        return False


def write_bytes(path: str | os.PathLike, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically; returns the path."""
    path = os.fspath(path)
    with _disk_errors(path):
        return _write_bytes(path, data)


def _write_bytes(path: str, data: bytes) -> str:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        faults.point("atomic-write", path)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)
    return path


def write_text(path: str | os.PathLike, text: str) -> str:
    return write_bytes(path, text.encode("utf-8"))


def _jsonable(x: Any) -> Any:
    # numpy scalars and arrays end up in metrics and indices.
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


def dumps(obj: Any, indent: int | None = 2) -> str:
    """JSON text as lpjax writes it everywhere (numpy values allowed): UTF-8
    as is, unless the data holds a lone surrogate (JSON sources may), which
    only an ASCII escape can carry into a valid UTF-8 file."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False, default=_jsonable)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(obj, indent=indent, ensure_ascii=True, default=_jsonable)
    return text


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> str:
    return write_text(path, dumps(obj, indent) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> str:
    return write_text(path, "".join(dumps(r, None) + "\n" for r in rows))


@contextlib.contextmanager
def directory(path: str | os.PathLike) -> Iterator[str]:
    """Build a directory under a temporary name and swap it into ``path``.

    ``with atomic.directory(out) as tmp: write files into tmp``. On success
    every file is synced and the directory renamed into place, replacing an
    existing one; on error the temporary directory is removed and ``path``
    is untouched."""
    path = os.path.abspath(os.fspath(path))
    with _disk_errors(path):
        with _directory(path) as tmp:
            yield tmp


@contextlib.contextmanager
def _directory(path: str) -> Iterator[str]:
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o777 & ~_UMASK)
        yield tmp
        for root, _, files in os.walk(tmp):
            for name in files:
                with open(os.path.join(root, name), "rb") as f:
                    os.fsync(f.fileno())
        faults.point("atomic-dir", path)
        old = None
        if os.path.lexists(path):
            old = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}.", suffix=".old")
            os.replace(path, os.path.join(old, "x"))
        os.replace(tmp, path)
        _fsync_dir(parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 120) -> str:
    """Render a matplotlib Figure (object API, Agg canvas: no display) to PNG at ``path``."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return write_bytes(path, buf.getvalue())
