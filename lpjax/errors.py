"""The one kind of error a user can cause and fix, and how it is shown.

Everything a user controls (data files, score files, cluster files,
checkpoints, tokenizers, the config, a judge endpoint, the workdir's disk)
fails as a ``UserError``: the launcher prints it as one line,

    lpjax: <file or field>[: record N]: <what is wrong and what to do>

and exits with status 2, without a traceback (``LPJAX_TRACEBACK=1`` or
``--traceback`` shows it). Anything else is a bug in lpjax and raises
normally. The specific kinds (``DataError``, ``ConfigError``,
``CheckpointError``, ``JudgeError``, ``DiskError``) subclass it so callers
can still catch what they expect, and each stays a ``ValueError`` (or
``RuntimeError``/``OSError``) for code that caught those before.
"""
from __future__ import annotations

import errno
import os


class UserError(Exception):
    """A problem in the user's input, named by ``where`` (a file path or a
    config field) and, for a file of records, the 1-based ``record``."""

    def __init__(self, where: str, message: str, record: int | None = None):
        self.where, self.message, self.record = str(where), str(message), record
        text = self.where + ": " if self.where else ""
        if record is not None:
            text += f"record {record}: "
        # One line, whatever the message quotes (parser messages, reprs of values).
        super().__init__((text + self.message).replace("\r", "\\r").replace("\n", "\\n"))


class DataError(UserError, ValueError):
    """A problem in an input file of records, scores or cluster ids:
    ``path: record N: reason``."""

    def __init__(self, path: str | os.PathLike, reason: str, record: int | None = None):
        super().__init__(os.fspath(path), reason, record)
        self.path, self.reason = self.where, reason


class DiskError(UserError, OSError):
    """The workdir or store cannot be written: no permission, a full disk,
    a read-only filesystem. A rerun after fixing it resumes."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(os.fspath(path), reason)


# errno values that say "your disk or your permissions", not "lpjax's bug".
DISK_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
               errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
               errno.EROFS: "read-only filesystem"}


def disk_error(err: OSError, path: str | os.PathLike | None = None) -> DiskError | None:
    """The DiskError an OSError stands for (naming ``path`` when the error
    itself names no file), or None when it is not a disk/permission error."""
    if err.errno not in DISK_ERRNOS:
        return None
    where = err.filename if err.filename is not None else path
    what = DISK_ERRNOS[err.errno]
    advice = ("free some space (or choose another --config.workdir/--config.store) and rerun the same command; "
              "finished work is kept" if err.errno in (errno.ENOSPC, errno.EDQUOT)
              else "make it writable (or choose another --config.workdir/--config.store) and rerun the same command")
    return DiskError(os.fspath(where) if where is not None else "workdir", f"{what}; {advice}")
