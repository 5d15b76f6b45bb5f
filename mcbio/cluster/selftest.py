"""Cluster self-test jobs: check that a profile submits, runs arrays and requeues.

    python -m mcbio.cluster.selftest cluster=slurm resources.profile=local_slurm cells=3

``probe`` reports where it ran; ``count`` is a resumable counter whose state file is
its checkpoint, the smallest job that shows timeout -> checkpoint -> requeue -> resume.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from mcbio.config.schema import RunConfig, choice
from mcbio.files import write_json_atomic

if TYPE_CHECKING:  # the launcher imports this module's jobs by name; no import cycle at run time
    from mcbio.cluster.launcher import LaunchContext
    from mcbio.cluster.plan import Plan


@dataclass
class SelfTestConfig(RunConfig):
    name: str = "selftest"
    # Which job each element runs.
    # ``fail`` raises, to see how a failed element is reported.
    job: str = choice("probe", "probe", "count", "timed_count", "fail")
    # Elements of the array (each writes under ``<run_dir>/cell-<i>``).
    cells: int = 1
    steps: int = 3
    step_seconds: float = 0.0
    # Set by the planner on each element so results can be told apart.
    cell: int = 0


def plan_selftest(cfg: SelfTestConfig, ctx: "LaunchContext") -> "Plan":
    """``cells`` elements of ``job``; an element is done once its output file says it finished."""
    from mcbio.cluster.launcher import element_name, run_dir_of
    from mcbio.cluster.plan import Element, Plan, Stage

    run_dir = run_dir_of(cfg)
    elements = []
    for i in range(cfg.cells):
        out = run_dir / f"cell-{i}"
        el_cfg = dataclasses.replace(cfg, cell=i, out_dir=str(out))
        marker = out / ("probe.json" if cfg.job in ("probe", "fail") else "counter.json")
        elements.append(Element(key=element_name(cfg.job, f"cell-{i}"), entry=f"mcbio.cluster.selftest:{cfg.job}",
                                cfg=el_cfg, done=lambda m=marker: _finished(m, cfg.steps),
                                describe=lambda r: f"pid {r.get('pid')}, step {r.get('step')}"))
    return Plan(name=cfg.name, run_dir=run_dir, stages=(Stage(cfg.job, tuple(elements), cfg.resources),))


def _finished(marker: Path, steps: int) -> bool:
    if not marker.is_file():
        return False
    state = json.loads(marker.read_text())
    return "pid" in state and "step" not in state or state.get("step") == steps


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
    write_json_atomic(out / "probe.json", info)
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


def fail(cfg: SelfTestConfig) -> dict:
    """Raise after one step: the launcher must show this message, not only a log path."""
    time.sleep(cfg.step_seconds)
    raise ValueError(f"selftest failure in cell {cfg.cell}: this message must reach the launcher's output")


def timed_count(cfg: SelfTestConfig) -> dict:
    """``count`` with wall-clock start and end, to see whether jobs overlapped."""
    started = time.time()
    state = count(cfg)
    return {**state, "started": started, "finished": time.time()}


if __name__ == "__main__":
    from mcbio.cluster.launcher import launch

    raise SystemExit(launch(SelfTestConfig, None, plan_selftest, sys.argv[1:]))
