"""Turn ``cluster`` + ``resources`` into a submitit executor. Cluster specifics live here only."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Optional

import submitit

from mcbio.config.loader import ConfigError
from mcbio.config.schema import ClusterResources


def resolve_cluster(cluster: str) -> str:
    """``auto`` means Slurm where ``sbatch`` is on PATH, else submitit's local executor."""
    if cluster == "auto":
        return "slurm" if shutil.which("sbatch") else "local"
    if cluster == "slurm" and not shutil.which("sbatch"):
        raise ConfigError("cluster=slurm but 'sbatch' is not on PATH: is Slurm installed here? "
                          "(cluster=local runs on this machine)")
    return cluster


def check_backend(resources: ClusterResources, backend: str) -> None:
    """A Slurm profile never runs on the local executor: its setup lines are cluster shell.

    ``module load ...`` lines fail on a laptop with ``module: not found`` inside every
    job; stop before submitting instead, naming the profile and the key to change.
    """
    if backend == "local" and resources.setup:
        raise ConfigError(
            f"this run executes locally (no sbatch on PATH, or cluster=local) but 'resources.profile' is "
            f"'{resources.profile}', a Slurm profile whose setup lines ({resources.setup[0]!r}, ...) would run in "
            f"your shell. Set resources.profile=local (or preset=smoke), or run where Slurm is (cluster=slurm).")
    if backend == "local" and resources.nodes > 1:
        raise ConfigError(f"this run executes locally on one machine, but 'resources.nodes'={resources.nodes}")


def make_executor(backend: str, resources: ClusterResources, folder: str | Path, job_name: str,
                  dependency: Optional[str] = None) -> submitit.Executor:
    """A submitit executor for one stage; ``dependency`` is sbatch's (``afterok:1_0:1_1``)."""
    if backend == "slurm":
        executor = submitit.SlurmExecutor(folder=str(folder), max_num_timeout=resources.max_requeues)
        params: dict = dict(
            job_name=job_name,
            time=max(1, math.ceil(resources.timeout_min)),  # sbatch takes whole minutes
            nodes=resources.nodes,
            ntasks_per_node=resources.tasks_per_node,
            cpus_per_task=resources.cpus_per_task,
            gpus_per_node=resources.gpus_per_node or None,
            mem=f"{resources.mem_gb}GB" if resources.mem_gb else None,
            partition=resources.partition,
            account=resources.account,
            qos=resources.qos,
            constraint=resources.constraint,
            signal_delay_s=resources.signal_delay_s,
            array_parallelism=resources.array_parallelism,
            setup=list(resources.setup) or None,
            dependency=dependency,
            additional_parameters=dict(resources.additional_parameters) or None,
        )
        executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
        return executor
    check_backend(resources, backend)
    executor = submitit.LocalExecutor(folder=str(folder), max_num_timeout=resources.max_requeues)
    executor.update_parameters(
        timeout_min=float(resources.timeout_min),  # fractions of a minute are fine locally
        tasks_per_node=resources.tasks_per_node,
        gpus_per_node=resources.gpus_per_node,
        signal_delay_s=resources.signal_delay_s,
    )
    return executor
