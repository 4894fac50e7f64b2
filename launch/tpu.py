"""Cloud TPU VM slices: one ``gcloud compute tpus tpu-vm ssh NAME
--worker=all --command=...`` line per point, which runs lpjax on every host
of the slice with ``--config.distributed.coordinator=auto`` (JAX finds the
coordinator and each host feeds its rows). The lines run one point after
another from a script; a failed point is reported and the rest go on.
"""
from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Sequence

from launch.points import Point

AUTO = "--config.distributed.coordinator=auto"


@dataclasses.dataclass(frozen=True)
class TpuOptions:
    name: str
    zone: str
    project: str = ""
    repo: str = "~/lpjax"  # the checkout on every host (runs and store paths are relative to it, or absolute)
    python: str = "python3"


def remote_command(point: Point, options: TpuOptions) -> str:
    """What each host runs for ``point``."""
    args = " ".join(shlex.quote(a) for a in [options.python, "-m", "lpjax.launch", *point.args(), AUTO])
    # "~" must stay unquoted for the remote shell to expand it.
    repo = options.repo if options.repo.startswith("~") and " " not in options.repo else shlex.quote(options.repo)
    return f"cd {repo} && {args}"


def double_quoted(text: str) -> str:
    """``text`` as one bash word in double quotes (\\, ", $ and ` escaped)."""
    return '"' + re.sub(r'([\\"$`])', r"\\\1", text) + '"'


def gcloud_line(point: Point, options: TpuOptions) -> str:
    project = f" --project={shlex.quote(options.project)}" if options.project else ""
    return (f"gcloud compute tpus tpu-vm ssh {shlex.quote(options.name)} --zone={shlex.quote(options.zone)}{project} "
            f"--worker=all --command={double_quoted(remote_command(point, options))}")


def script(points: Sequence[Point], options: TpuOptions) -> str:
    """A bash script running every point in turn; exits 1 if any failed."""
    lines = ["#!/usr/bin/env bash", "# lpjax sweep on a Cloud TPU VM slice: one point after another, every host "
             "running each.", "# Rerunning it skips finished stages (the shared store) and resumes the rest.",
             "set -u", "failed=0", ""]
    for p in points:
        lines += [f"# point {p.index}: {p.name}",
                  f"{gcloud_line(p, options)} || {{ echo {shlex.quote(f'point {p.name} failed')} >&2; failed=1; }}",
                  ""]
    return "\n".join(lines + ['exit "$failed"', ""])
