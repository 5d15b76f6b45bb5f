"""The same launcher code against a real Slurm (the one-node cluster of .ci/start_slurm.sh)."""

from __future__ import annotations

import time

import pytest

from mcbio.cluster import submit, submit_array
from mcbio.cluster.selftest import SelfTestConfig
from mcbio.config import load_config

pytestmark = pytest.mark.slurm


def slurm_cfg(tmp_path, *overrides: str) -> SelfTestConfig:
    return load_config(
        SelfTestConfig, None,
        ["cluster=slurm", "resources.profile=local_slurm", f"out_dir={tmp_path}", "tracking.wandb=false", *overrides],
    )


def final_state(job, timeout_s: float = 300) -> str:
    """Accounting lags the result by seconds: poll until Slurm reports a final state."""
    deadline = time.time() + timeout_s
    state = "UNKNOWN"
    while time.time() < deadline:
        state = job.get_info(mode="force").get("State", "UNKNOWN")
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"):
            return state
        time.sleep(1)
    return state


def test_job_array_runs_every_cell_on_slurm(tmp_path):
    cfgs = [slurm_cfg(tmp_path, f"cell={i}") for i in range(3)]
    jobs = submit_array("mcbio.cluster.selftest:probe", cfgs, tmp_path / "submitit")
    assert len({j.job_id.split("_")[0] for j in jobs}) == 1, "not one Slurm array"
    results = [j.result() for j in jobs]
    assert sorted(r["cell"] for r in results) == [0, 1, 2]
    assert sorted(r["slurm_array_task_id"] for r in results) == ["0", "1", "2"]
    assert all(r["slurm_job_id"] for r in results)
    assert {final_state(j) for j in jobs} == {"COMPLETED"}


@pytest.mark.slow
def test_job_that_times_out_is_requeued_and_resumes(tmp_path):
    # 2-minute limit, signalled 100 s before it (slurmctld checks limits every ~30 s):
    # the first attempt is interrupted part-way, submitit's checkpoint() requeues the job
    # and the next attempt continues from the saved step.
    cfg = slurm_cfg(tmp_path, "steps=30", "step_seconds=1.0", "resources.timeout_min=2",
                   "resources.signal_delay_s=100", "resources.max_requeues=8")
    job = submit("mcbio.cluster.selftest:count", cfg)
    state = job.result()
    assert state["step"] == 30
    assert state["attempts"] >= 2, "the job finished without ever being requeued"
    assert state["resumed_from"][0] == 0 and 0 < state["resumed_from"][1] < 30
    assert final_state(job) == "COMPLETED"
