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
def test_signalled_job_checkpoints_requeues_through_slurm_and_resumes(tmp_path, capsys):
    # The signal Slurm sends before a time limit (--signal=USR2@delay) or a preemption is
    # sent here by hand, once the job has saved a step: when Slurm's own timer fires depends
    # on how fast a loaded machine starts the job, which a test must not. submitit's handler
    # then runs Job.checkpoint() and requeues through `scontrol requeue`, and the next attempt
    # continues from the saved step.
    counter = tmp_path / "cell-0" / "counter.json"
    args = ("job=count", "steps=40", "step_seconds=0.5", "resources.timeout_min=10", "resources.max_requeues=3")
    assert run(tmp_path, *args, "wait=false") == 0
    job_id = JobRegistry(tmp_path).read()["count/cell-0"]["job_id"]
    deadline = time.time() + 240
    while time.time() < deadline and not (counter.is_file() and json.loads(counter.read_text())["step"] >= 2):
        time.sleep(0.5)
    assert counter.is_file() and json.loads(counter.read_text())["step"] >= 2, "the job never saved a step"
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (json.loads(counter.read_text())["step"] == 40 and not slurm_alive([job_id])):
        time.sleep(1)
    state = json.loads(counter.read_text())
    assert state["step"] == 40
    assert state["attempts"] == 2, "the signalled job was not requeued exactly once"
    assert state["resumed_from"][0] == 0 and 2 <= state["resumed_from"][1] < 40
    assert sacct_state(job_id) == "COMPLETED"
    logs = (tmp_path / "submitit" / "count").rglob("*_log.err")
    assert any("Caught signal SIGUSR2" in f.read_text(errors="replace") for f in logs)
    # One Slurm job throughout, and a relaunch finds the element done.
    assert JobRegistry(tmp_path).read()["count/cell-0"]["job_id"] == job_id
    capsys.readouterr()
    assert run(tmp_path, *args) == 0
    assert "nothing to run, every element is done" in capsys.readouterr().out
