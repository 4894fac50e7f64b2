"""Running points: one point as a ``python -m lpjax.launch`` subprocess (the
command a user runs by hand, isolated so that one point's crash leaves the
sweep going), its status in <workdir>/point.json, and the local loop.

The same ``run_point`` runs inside Slurm jobs (launch/slurm.py), so local
and cluster execution differ only in who calls it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from launch.points import REPO, Point

STATUS = "point.json"


def command(point: Point, extra: Sequence[str] = (), python: str = sys.executable) -> list[str]:
    return [python, "-m", "lpjax.launch", *point.args(), *extra]


def read_status(point: Point) -> dict:
    try:
        with open(os.path.join(point.workdir, STATUS)) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def is_done(point: Point) -> bool:
    """Finished with exactly these overrides and config (an edited sweep
    reruns the point; its stages are skipped where their keys still match)."""
    s = read_status(point)
    return s.get("status") == "done" and s.get("overrides") == json.loads(json.dumps(point.overrides)) \
        and s.get("config") == point.config


def error_line(log_text: str) -> str:
    """The one line that says why a run failed: lpjax's own 'lpjax: ...'
    message, else the last line of the output (a traceback's exception)."""
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    own = [line for line in lines if line.startswith("lpjax: ")]
    return own[-1] if own else (lines[-1] if lines else "no output")


def _env() -> dict[str, str]:
    # The child imports lpjax from this checkout even when it is not installed.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH", "")) if p)
    return env


def run_point(point: Point, extra: Sequence[str] = (), rank: int = 0) -> dict:
    """Run one point to the end (finished stages are skipped, interrupted ones
    resume from their checkpoints); returns and records its status. rank > 0:
    another process of a multi-host point, with a log of its own; process 0
    records the status."""
    from lpjax import atomic

    os.makedirs(point.workdir, exist_ok=True)
    log_path = os.path.join(point.workdir, "launch.log" if rank == 0 else f"launch.{rank}.log")
    t0 = time.time()
    with open(log_path, "a") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command(point, extra))}\n")
        log.flush()
        rc = subprocess.run(command(point, extra), stdout=log, stderr=subprocess.STDOUT, env=_env()).returncode
    status: dict[str, Any] = {"status": "done" if rc == 0 else "failed", "returncode": rc,
                              "seconds": round(time.time() - t0, 1), "overrides": point.overrides,
                              "config": point.config, "name": point.name, "log": log_path}
    if rc:
        with open(log_path) as f:
            status["error"] = error_line(f.read()[-20000:])
    if rank == 0:
        atomic.write_json(os.path.join(point.workdir, STATUS), status)
    return status


def run_local(points: Sequence[Point], extra: Sequence[str] = (), echo: Callable[[str], None] = print) -> list[dict]:
    """One point after another; finished points are skipped, a failed one is
    reported with its error line and the rest go on."""
    results = []
    for i, p in enumerate(points, 1):
        head = f"[{i}/{len(points)}] {p.name}"
        if is_done(p):
            echo(f"{head}: done earlier, skipped")
            results.append({**read_status(p), "status": "skipped"})
            continue
        echo(f"{head}: running (log {os.path.join(p.workdir, 'launch.log')})")
        r = run_point(p, extra)
        echo(f"{head}: done in {r['seconds']:.0f} s" if r["status"] == "done" else f"{head}: FAILED: {r['error']}")
        results.append(r)
    return results


def summary_line(results: Sequence[dict]) -> str:
    counts = {s: sum(r["status"] == s for r in results) for s in ("done", "skipped", "failed")}
    return f"{len(results)} points: {counts['done']} ran, {counts['skipped']} already done, {counts['failed']} failed"
