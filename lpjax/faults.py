"""Named kill points, for testing that a run killed anywhere resumes to the
result of a run never killed (tests/integration/test_kill_resume.py).

``LPJAX_KILL_AT=<label>:<n>`` makes the process SIGKILL itself the n-th time
it reaches ``point(<label>)``: no cleanup, no atexit, no flushing, as a
preempted machine dies. Unset (always, outside that test) a point costs one
environment lookup. Labels name where they stand: ``stage:<name>`` (a stage
body about to start), ``stage-end:<name>`` (its outputs written, not yet
marked done), ``step:<run>`` (after a train step), ``epoch-end:<run>``
(after the epoch hook, before its checkpoint), ``ckpt-save`` (a checkpoint
write in flight), ``score-row`` (between a score row's two arrays),
``atomic-write`` / ``atomic-dir`` (a file or directory written under its
temporary name, not yet renamed into place).
``LPJAX_FAIL_AT=<label>:<n>:<ERRNO>`` (e.g. ``atomic-write:8:ENOSPC``) raises
that OSError there instead (tests/integration/test_disk_errors.py).
"""
from __future__ import annotations

import errno
import os
import signal
import sys

_SEEN: dict[str, int] = {}


def point(label: str, path: str | None = None) -> None:
    """Die here if LPJAX_KILL_AT names this label and its count is reached;
    raise OSError(<errno>) for ``path`` if LPJAX_FAIL_AT=<label>:<n>:<ENAME>
    does (a full disk or a refused write, simulated where lpjax writes)."""
    kill, fail = os.environ.get("LPJAX_KILL_AT"), os.environ.get("LPJAX_FAIL_AT")
    if not (kill or fail):
        return
    _SEEN[label] = _SEEN.get(label, 0) + 1
    if kill:
        want, _, n = kill.rpartition(":")
        if label == want and _SEEN[label] == int(n):
            print(f"lpjax: killed at {label}:{n} (LPJAX_KILL_AT)", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    if fail:
        rest, _, name = fail.rpartition(":")
        want, _, n = rest.rpartition(":")
        if label == want and _SEEN[label] == int(n):
            code = getattr(errno, name)
            raise OSError(code, os.strerror(code), path)
