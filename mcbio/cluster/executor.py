"""Turn ``cluster`` + ``resources`` into a submitit executor. Cluster specifics live here only."""

from __future__ import annotations

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
    executor = submitit.AutoExecutor(
        folder=str(folder), cluster=backend, slurm_max_num_timeout=resources.max_requeues
    )
    params: dict = dict(
        name=job_name,
        timeout_min=resources.timeout_min,
        nodes=resources.nodes,
        tasks_per_node=resources.tasks_per_node,
        cpus_per_task=resources.cpus_per_task,
    )
    if resources.gpus_per_node:
        params["gpus_per_node"] = resources.gpus_per_node
    if resources.mem_gb:
        params["mem_gb"] = resources.mem_gb
    if backend == "slurm":
        slurm = dict(
            slurm_partition=resources.partition,
            slurm_account=resources.account,
            slurm_qos=resources.qos,
            slurm_constraint=resources.constraint,
            slurm_signal_delay_s=resources.signal_delay_s,
            slurm_array_parallelism=resources.array_parallelism,
            slurm_setup=list(resources.setup) or None,
            slurm_additional_parameters=dict(resources.additional_parameters) or None,
        )
        params.update({k: v for k, v in slurm.items() if v is not None})
    else:
        params["local_setup"] = list(resources.setup)
    executor.update_parameters(**params)
    return executor
