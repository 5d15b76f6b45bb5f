"""Turn ``cluster`` + ``resources`` into a submitit executor. Cluster specifics live here only."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import submitit

from mcbio.config.schema import ClusterResources


def resolve_cluster(cluster: str) -> str:
    """``auto`` means Slurm where ``sbatch`` is on PATH, else submitit's local executor."""
    if cluster == "auto":
        return "slurm" if shutil.which("sbatch") else "local"
    if cluster == "slurm" and not shutil.which("sbatch"):
        raise RuntimeError("cluster=slurm but 'sbatch' is not on PATH: is Slurm installed here?")
    return cluster


def make_executor(
    cluster: str, resources: ClusterResources, folder: str | Path, job_name: str
) -> submitit.Executor:
    backend = resolve_cluster(cluster)
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
            additional_parameters=dict(resources.additional_parameters) or None,
        )
        executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
        return executor
    if resources.nodes > 1:
        raise ValueError(f"cluster=local runs on one node, but resources.nodes={resources.nodes}")
    executor = submitit.LocalExecutor(folder=str(folder), max_num_timeout=resources.max_requeues)
    executor.update_parameters(
        timeout_min=float(resources.timeout_min),  # fractions of a minute are fine locally
        tasks_per_node=resources.tasks_per_node,
        gpus_per_node=resources.gpus_per_node,
        signal_delay_s=resources.signal_delay_s,
        setup=list(resources.setup),
    )
    return executor
