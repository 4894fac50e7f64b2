"""Slurm through submitit: the whole grid as one job array, at most
``array_parallelism`` points at once. Each array task runs one point with
``launch.runner.run_point``, the code the local loop runs; a point spanning
several tasks (nodes x tasks_per_node > 1) runs one lpjax process per task
with ``--config.distributed.coordinator=auto``, JAX reading the coordinator
from Slurm's environment. A preempted or timed-out task is requeued
(submitit's checkpoint hook) and resumes from its stages' checkpoints.

submitit's LocalExecutor runs the same job objects on this machine (tests).
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from launch.points import Point

AUTO = "--config.distributed.coordinator=auto"


@dataclasses.dataclass(frozen=True)
class SlurmOptions:
    """What the sbatch of the array asks for (submitit's SlurmExecutor names)."""

    partition: str = ""
    account: str = ""
    time_min: int = 24 * 60
    nodes: int = 1
    tasks_per_node: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int = 0
    mem_gb: float = 0
    array_parallelism: int = 8
    job_name: str = "lpjax-sweep"
    setup: tuple[str, ...] = ()  # shell lines before srun (module load, venv activation)

    @property
    def tasks(self) -> int:
        return self.nodes * self.tasks_per_node

    def executor_parameters(self) -> dict[str, Any]:
        """Parameters for SlurmExecutor.update_parameters (unset ones left to Slurm)."""
        p: dict[str, Any] = {"job_name": self.job_name, "time": self.time_min, "nodes": self.nodes,
                             "ntasks_per_node": self.tasks_per_node, "array_parallelism": self.array_parallelism}
        optional = {"partition": self.partition, "account": self.account, "gpus_per_node": self.gpus_per_node,
                    "cpus_per_task": self.cpus_per_task, "mem": f"{self.mem_gb:g}GB" if self.mem_gb else "",
                    "setup": list(self.setup)}
        return {**p, **{k: v for k, v in optional.items() if v}}


def point_extra_args(options: SlurmOptions) -> list[str]:
    return [AUTO] if options.tasks > 1 else []


class PointJob:
    """A picklable callable for one point; submitit's Checkpointable
    requeues it on preemption/timeout with the same arguments (the rerun
    skips finished stages and resumes from checkpoints)."""

    def __init__(self, extra: Sequence[str] = ()):
        self.extra = list(extra)

    def __call__(self, point: Point) -> dict:
        from launch.runner import is_done, read_status, run_point

        rank = _global_rank()
        if is_done(point):
            return {**read_status(point), "status": "skipped"}
        # Every task of a multi-host point runs lpjax (they enter its
        # collectives together); task 0 alone records the status.
        return run_point(point, self.extra, rank=rank)

    def checkpoint(self, point: Point) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(PointJob(self.extra), point)


def _global_rank() -> int:
    try:
        import submitit

        return submitit.JobEnvironment().global_rank
    except RuntimeError:  # not inside a submitit job
        return 0


def submit(points: Sequence[Point], folder: str, options: SlurmOptions, cluster: str = "slurm") -> list[Any]:
    """Submit the points as one array; returns submitit jobs (``.result()``
    waits for a point's status dict). cluster="local": submitit's
    LocalExecutor, the same jobs as subprocesses of this machine."""
    import submitit

    from launch.points import REPO

    # The jobs unpickle launch.slurm.PointJob and import lpjax: Slurm (and the
    # local executor) pass this environment on, so name the checkout in it.
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if REPO not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([REPO, *filter(None, paths)])
    job = PointJob(point_extra_args(options))
    if cluster == "local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=options.time_min, tasks_per_node=options.tasks_per_node)
    else:
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=3)
        executor.update_parameters(**options.executor_parameters())
    return executor.map_array(job, list(points))


def sbatch_text(num_points: int, folder: str, options: SlurmOptions, python: str = sys.executable) -> str:
    """The sbatch script submitit submits for this array (its own renderer,
    so what is shown is what Slurm gets), for review before submitting."""
    from submitit.slurm.slurm import _make_sbatch_string  # no public way to render it without sbatch

    command = " ".join([shlex.quote(python), "-u -m submitit.core._submit", shlex.quote(folder)])
    return _make_sbatch_string(command=command, folder=folder, map_count=num_points, **options.executor_parameters())


def write_sbatch(path: str, text: str) -> str:
    from lpjax import atomic

    os.makedirs(os.path.dirname(path), exist_ok=True)
    return atomic.write_text(path, text)
