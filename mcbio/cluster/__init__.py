"""Submission layer on submitit: plans of job elements, one launcher, local executor or real Slurm."""

from mcbio.cluster.launcher import LaunchContext, launch, run_plan
from mcbio.cluster.plan import Element, Plan, Stage

__all__ = ["Element", "LaunchContext", "Plan", "Stage", "launch", "run_plan"]
