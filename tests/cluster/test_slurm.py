"""The one launcher against a real Slurm (the one-node cluster of slurm/start_slurm.sh)."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from mcbio.cluster.launcher import launch
from mcbio.cluster.registry import JobRegistry, slurm_alive
from mcbio.cluster.selftest import SelfTestConfig, plan_selftest

pytestmark = pytest.mark.slurm


def run(tmp_path, *overrides: str) -> int:
    return launch(SelfTestConfig, None, plan_selftest,
                  ["cluster=slurm", "resources.profile=local_slurm", f"out_dir={tmp_path}", *overrides])


def sacct_state(job_id: str, timeout_s: float = 120) -> str:
    """Accounting lags the result by seconds: poll until Slurm reports a final state."""
    deadline = time.time() + timeout_s
    state = "UNKNOWN"
    while time.time() < deadline:
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id], capture_output=True, text=True)
        state = (out.stdout.split() or ["UNKNOWN"])[0]
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") or state.startswith("CANCELLED"):
            return state
        time.sleep(1)
    return state


def wait_gone(job_ids, timeout_s: float = 180) -> None:
    deadline = time.time() + timeout_s
    while slurm_alive(job_ids) and time.time() < deadline:
        time.sleep(1)


def test_job_array_runs_every_element_on_slurm(tmp_path):
    assert run(tmp_path, "cells=3") == 0
    infos = [json.loads((tmp_path / f"cell-{i}" / "probe.json").read_text()) for i in range(3)]
    assert sorted(i["slurm_array_task_id"] for i in infos) == ["0", "1", "2"]
    jobs = JobRegistry(tmp_path).read()
    assert len({v["job_id"].split("_")[0] for v in jobs.values()}) == 1, "not one Slurm array"
    assert {sacct_state(v["job_id"]) for v in jobs.values()} == {"COMPLETED"}


def test_relaunches_submit_nothing_while_running_and_exactly_the_cancelled_element_after(tmp_path, capsys):
    assert run(tmp_path, "cells=3", "job=count", "steps=25", "step_seconds=1.0", "wait=false") == 0
    jobs = {k: v["job_id"] for k, v in JobRegistry(tmp_path).read().items()}
    assert len(jobs) == 3
    capsys.readouterr()
    # While the array runs (or waits in the queue), a relaunch submits nothing new.
    assert run(tmp_path, "cells=3", "job=count", "steps=25", "step_seconds=1.0") == 0
    assert "nothing new submitted: 3 element(s) still queued or running" in capsys.readouterr().out
    assert {k: v["job_id"] for k, v in JobRegistry(tmp_path).read().items()} == jobs
    # Cancel one element; once the others end, a relaunch reruns exactly that one.
    subprocess.run(["scancel", jobs["count/cell-1"]], check=True)
    wait_gone(jobs.values())
    assert run(tmp_path, "cells=3", "job=count", "steps=25", "step_seconds=1.0") == 0
    out = capsys.readouterr().out
    assert "submitted 1 element(s)" in out and "count/cell-1: pending" in out
    after = {k: v["job_id"] for k, v in JobRegistry(tmp_path).read().items()}
    assert after["count/cell-0"] == jobs["count/cell-0"] and after["count/cell-2"] == jobs["count/cell-2"]
    assert after["count/cell-1"] != jobs["count/cell-1"]
    assert json.loads((tmp_path / "cell-1" / "counter.json").read_text())["step"] == 25


def test_a_failed_slurm_element_shows_its_exception(tmp_path, capsys):
    assert run(tmp_path, "job=fail") == 1
    assert "ValueError: selftest failure in cell 0" in capsys.readouterr().err


@pytest.mark.slow
def test_job_that_times_out_is_requeued_and_resumes(tmp_path):
    # 2-minute limit, signalled 100 s before it (slurmctld checks limits every ~30 s):
    # the first attempt is interrupted part-way, submitit's checkpoint() requeues the job
    # and the next attempt continues from the saved step.
    assert run(tmp_path, "job=count", "steps=30", "step_seconds=1.0", "resources.timeout_min=2",
               "resources.signal_delay_s=100", "resources.max_requeues=8") == 0
    state = json.loads((tmp_path / "cell-0" / "counter.json").read_text())
    assert state["step"] == 30
    assert state["attempts"] >= 2, "the job finished without ever being requeued"
    assert state["resumed_from"][0] == 0 and 0 < state["resumed_from"][1] < 30
