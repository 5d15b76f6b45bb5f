"""Two launches of one run at once: an element is never run twice, and both launches end knowing it is done."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import threading
import time

from filelock import FileLock

import mcbio.cluster.launcher as launcher
from mcbio.cluster.job import AlreadyRunning
from mcbio.cluster.registry import running_lock
from mcbio.cluster.selftest import SelfTestConfig, count, plan_selftest
from mcbio.config import load_config

SELFTEST = [sys.executable, "-m", "mcbio.cluster.selftest", "cluster=local", "job=count"]


def when_the_job_has_ended(run_dir, then, timeout_s: float = 120.0) -> threading.Thread:
    """Run ``then`` once this launch's job has returned (its result file exists): the other launch ends later."""
    def wait():
        deadline = time.time() + timeout_s
        while not list((run_dir / "submitit" / "count").glob("*_result.pkl")) and time.time() < deadline:
            time.sleep(0.2)
        then()

    thread = threading.Thread(target=wait)
    thread.start()
    return thread


def counter(run_dir) -> dict:
    return json.loads((run_dir / "cell-0" / "counter.json").read_text())


def test_a_job_whose_element_another_launch_runs_steps_aside_and_its_launch_waits(tmp_path, monkeypatch, capsys):
    """The race two launches run: both found the element pending; the other one's job started first."""
    args = ["cluster=local", f"out_dir={tmp_path}", "job=count", "steps=2"]
    cfg = load_config(SelfTestConfig, None, args)
    plan = plan_selftest(cfg, launcher.LaunchContext("local", None))
    element = plan.elements()[0]
    lock = FileLock(str(running_lock(plan.run_dir, element.file_key)), thread_local=False)  # released by the thread
    lock.acquire()  # the other launch's job, running

    def other_launch_finishes():
        count(element.cfg)
        lock.release()

    other = when_the_job_has_ended(tmp_path, other_launch_finishes)
    # Both launches checked before either job started: this one still sees the element pending.
    monkeypatch.setattr(launcher, "element_states", lambda plan, backend: {e.key: "pending" for e in plan.elements()})
    assert launcher.launch(SelfTestConfig, None, plan_selftest, args) == 0
    other.join()
    out = capsys.readouterr().out
    assert "another launch's job" in out and "not run twice" in out
    assert "done count/cell-0: by the other launch" in out
    assert counter(tmp_path)["attempts"] == 1  # counted by the other launch only
    (result_pkl,) = (tmp_path / "submitit" / "count").glob("*_result.pkl")
    assert isinstance(pickle.loads(result_pkl.read_bytes())[1], AlreadyRunning)


def test_a_stepped_aside_element_that_the_other_launch_leaves_unfinished_is_a_failure(tmp_path, monkeypatch, capsys):
    args = ["cluster=local", f"out_dir={tmp_path}", "job=count", "steps=2"]
    cfg = load_config(SelfTestConfig, None, args)
    plan = plan_selftest(cfg, launcher.LaunchContext("local", None))
    lock = FileLock(str(running_lock(plan.run_dir, plan.elements()[0].file_key)), thread_local=False)
    lock.acquire()
    other = when_the_job_has_ended(tmp_path, lock.release)  # the other launch's job dies without finishing
    monkeypatch.setattr(launcher, "element_states", lambda plan, backend: {e.key: "pending" for e in plan.elements()})
    assert launcher.launch(SelfTestConfig, None, plan_selftest, args) == 1
    other.join()
    captured = capsys.readouterr()
    assert "FAILED count/cell-0: it ran in another launch and is not done" in captured.err
    assert "launch the same command again" in captured.err


def test_two_launches_started_together_count_once(tmp_path):
    """Two real launch processes, started at the same moment into one run directory."""
    args = [*SELFTEST, f"out_dir={tmp_path}", "steps=6", "step_seconds=1.0"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    state = counter(tmp_path)
    assert state["step"] == 6 and state["attempts"] == 1, (state, outs)
    # Whichever way the race went, the loser said so: it found the element running, or its job stepped aside.
    assert any("already running in another launch" in o or "not run twice" in o for o in outs), outs
