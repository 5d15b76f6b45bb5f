"""torch.distributed environment for Composer, taken from the submitit job environment.

With one Slurm task per GPU, every task runs the same job object; Composer's
``dist`` module reads these variables to form the process group.
"""

from __future__ import annotations

import os

import submitit


def export_torch_distributed_env(master_port: int = 29500) -> int:
    """Set RANK, WORLD_SIZE, ... from submitit; return the world size (1 outside a job)."""
    try:
        env = submitit.JobEnvironment()
    except RuntimeError:  # not inside a submitit job (e.g. a direct library call)
        return int(os.environ.get("WORLD_SIZE", "1"))
    if env.num_tasks <= 1:
        return 1
    nodes = env.num_nodes
    os.environ.update(
        RANK=str(env.global_rank),
        LOCAL_RANK=str(env.local_rank),
        WORLD_SIZE=str(env.num_tasks),
        LOCAL_WORLD_SIZE=str(env.num_tasks // nodes),
        NODE_RANK=str(env.node),
        MASTER_ADDR=env.hostnames[0],
        MASTER_PORT=os.environ.get("MASTER_PORT", str(master_port)),
    )
    return env.num_tasks
