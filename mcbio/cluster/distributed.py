"""torch.distributed environment for Composer, taken from the submitit job environment.

With one Slurm task per GPU, every task runs the same job object; Composer's
``dist`` module reads these variables to form the process group.
"""

from __future__ import annotations

import os
import zlib
from typing import Optional

import submitit

# Rendezvous ports are drawn from [20000, 30000): below Linux's ephemeral range
# (32768+), so an outgoing connection rarely holds one.
PORT_BASE, PORT_SPAN = 20000, 10000


def job_master_port(job_id: str) -> int:
    """A rendezvous port that every task of ``job_id`` derives alike, and that differs between jobs.

    A fixed port (torch's 29500) makes two multi-task jobs on one machine (two local runs,
    or two Slurm jobs sharing a node) rendezvous with each other or fail to bind. crc32
    rather than ``hash()``: Python salts string hashes per process, and the tasks are
    separate processes that must agree.
    """
    return PORT_BASE + zlib.crc32(job_id.encode("utf-8")) % PORT_SPAN


def export_torch_distributed_env(master_port: Optional[int] = None) -> int:
    """Set RANK, WORLD_SIZE, ... from submitit; return the world size (1 outside a job).

    ``MASTER_PORT`` already in the environment wins, then ``master_port``, then a port
    derived from the job id (see :func:`job_master_port`).
    """
    try:
        env = submitit.JobEnvironment()
    except RuntimeError:  # not inside a submitit job (e.g. a direct library call)
        return int(os.environ.get("WORLD_SIZE", "1"))
    if env.num_tasks <= 1:
        return 1
    nodes = env.num_nodes
    port = master_port if master_port is not None else job_master_port(str(env.job_id))
    os.environ.update(
        RANK=str(env.global_rank),
        LOCAL_RANK=str(env.local_rank),
        WORLD_SIZE=str(env.num_tasks),
        LOCAL_WORLD_SIZE=str(env.num_tasks // nodes),
        NODE_RANK=str(env.node),
        MASTER_ADDR=env.hostnames[0],
        MASTER_PORT=os.environ.get("MASTER_PORT", str(port)),
    )
    return env.num_tasks
