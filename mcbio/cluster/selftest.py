"""Cluster self-test jobs: check that a profile submits, runs arrays and requeues.

    python -m mcbio.cluster.selftest cluster=slurm resources.profile=local_slurm

``probe`` reports where it ran; ``count`` is a resumable counter whose state file is
its checkpoint, the smallest job that shows timeout -> checkpoint -> requeue -> resume.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mcbio.config.schema import RunConfig
from mcbio.files import write_json_atomic


@dataclass
class SelfTestConfig(RunConfig):
    name: str = "selftest"
    steps: int = 3
    step_seconds: float = 0.0
    # Array cells tag themselves with this so results can be told apart.
    cell: int = 0


def probe(cfg: SelfTestConfig) -> dict:
    info = {
        "cell": cfg.cell,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm_array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID"),
        "python": sys.executable,
    }
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / f"probe-{cfg.cell}.json", info)
    return info


def count(cfg: SelfTestConfig) -> dict:
    """Count to ``steps``, saving after every step; a requeued attempt resumes from the file."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "counter.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {"step": 0, "attempts": 0, "resumed_from": []}
    state["attempts"] += 1
    state["resumed_from"].append(state["step"])
    write_json_atomic(state_path, state)
    while state["step"] < cfg.steps:
        time.sleep(cfg.step_seconds)
        state["step"] += 1
        write_json_atomic(state_path, state)
    return state


def timed_count(cfg: SelfTestConfig) -> dict:
    """``count`` with wall-clock start and end, to see whether jobs overlapped."""
    started = time.time()
    state = count(cfg)
    return {**state, "started": started, "finished": time.time()}


if __name__ == "__main__":
    from mcbio.cluster.launch import launch

    raise SystemExit(launch(SelfTestConfig, "mcbio.cluster.selftest:probe", None, sys.argv[1:]))
