"""Submission layer on submitit: local executor or real Slurm, job arrays, requeue."""

from mcbio.cluster.executor import make_executor, resolve_cluster
from mcbio.cluster.job import Job
from mcbio.cluster.launch import launch, submit, submit_array

__all__ = ["Job", "launch", "make_executor", "resolve_cluster", "submit", "submit_array"]
