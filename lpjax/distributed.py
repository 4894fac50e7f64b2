"""Multi-host start-up: one call before anything touches a device."""
from __future__ import annotations

import jax
from absl import logging


def initialize(coordinator: str = "", num_processes: int = 1, process_id: int = 0) -> None:
    """jax.distributed.initialize where configured. On TPU pods and SLURM/GPU
    clusters JAX finds the coordinator itself: pass coordinator="auto". On
    CPU hosts, collectives go through gloo."""
    if not coordinator or num_processes == 1 and coordinator != "auto":
        return
    if jax.config.jax_platforms in (None, "", "cpu"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if coordinator == "auto":
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id)
    logging.info("process %d of %d, %d local / %d global devices", jax.process_index(), jax.process_count(),
                 jax.local_device_count(), jax.device_count())
