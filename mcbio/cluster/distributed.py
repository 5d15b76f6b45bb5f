"""torch.distributed environment for Composer, taken from the submitit job environment.

With one Slurm task per GPU, every task runs the same job object; Composer's ``dist``
module reads RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, NODE_RANK, MASTER_ADDR and
MASTER_PORT to form the process group. submitit's ``TorchDistributedEnvironment`` sets all
of them but NODE_RANK, with a rendezvous port drawn from the job id (every task of a job
agrees on it, two jobs on one node do not collide).
"""

from __future__ import annotations

import os

import submitit


def export_torch_distributed_env() -> int:
    """Set the variables above for a multi-task job; return the world size (1 outside one)."""
    try:
        env = submitit.JobEnvironment()
    except RuntimeError:  # not inside a submitit job (e.g. a direct library call)
        return int(os.environ.get("WORLD_SIZE", "1"))
    if env.num_tasks <= 1:
        return 1
    # CUDA_VISIBLE_DEVICES stays as Slurm set it: Composer selects cuda:LOCAL_RANK itself.
    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    os.environ["NODE_RANK"] = str(env.node)
    return env.num_tasks
