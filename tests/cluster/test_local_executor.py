"""The one launcher on submitit's local executor: arrays, parallelism, requeue, failures, relaunches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from mcbio.cluster.launcher import launch, run_dir_of
from mcbio.cluster.selftest import SelfTestConfig, plan_selftest
from mcbio.config import load_config, to_yaml


def run(tmp_path, *overrides: str) -> int:
    return launch(SelfTestConfig, None, plan_selftest, ["cluster=local", f"out_dir={tmp_path}", *overrides])


def state(tmp_path, cell: int, name: str = "counter.json") -> dict:
    return json.loads((tmp_path / f"cell-{cell}" / name).read_text())


def test_local_array_runs_every_element_in_its_own_process(tmp_path, capsys):
    assert run(tmp_path, "cells=3") == 0
    pids = {state(tmp_path, i, "probe.json")["pid"] for i in range(3)}
    assert len(pids) == 3 and os.getpid() not in pids
    out = capsys.readouterr().out
    assert "3/3 done, 0 running, 0 failed" in out
    # Relaunch: every element is done, nothing is submitted.
    assert run(tmp_path, "cells=3") == 0
    assert "nothing to run, every element is done" in capsys.readouterr().out
    assert len(list((tmp_path / "submitit" / "probe").glob("*_submitted.pkl"))) == 3


def test_timed_out_local_job_requeues_and_resumes(tmp_path):
    # 18 s limit, signalled 8 s before it: the first attempt is interrupted around step 7
    # of 12 and requeued; the second resumes from the saved step instead of from 0. (A 4 s
    # window ran out of requeues on a loaded machine, where a job takes 3 s to start.)
    assert run(tmp_path, "job=count", "steps=12", "step_seconds=1.0", "resources.timeout_min=0.3",
               "resources.signal_delay_s=8") == 0
    st = state(tmp_path, 0)
    assert st["step"] == 12 and st["attempts"] >= 2
    assert st["resumed_from"][0] == 0 and st["resumed_from"][1] > 0


def test_local_array_respects_its_parallelism(tmp_path):
    # Three 2-second jobs with one slot run one after another, never overlapping.
    assert run(tmp_path, "job=timed_count", "cells=3", "steps=2", "step_seconds=1.0",
               "resources.array_parallelism=1") == 0
    import pickle

    pkl = sorted((tmp_path / "submitit" / "timed_count").glob("*_result.pkl"))
    # submitit's result file: ("success", the job's return value)
    spans = sorted((r["started"], r["finished"]) for r in (pickle.loads(p.read_bytes())[1] for p in pkl))
    assert len(spans) == 3
    assert all(prev_end <= start for (_, prev_end), (start, _) in zip(spans, spans[1:]))
    # Each element's process is started only once the one before it has finished: a stage of
    # hundreds of elements does not hold hundreds of waiting processes.
    submitted = sorted(p.stat().st_mtime for p in (tmp_path / "submitit" / "timed_count").glob("*_submitted.pkl"))
    assert all(end <= sub for (_, end), sub in zip(spans, submitted[1:]))


def test_follow_starts_a_few_at_a_time_and_skips_what_became_done():
    from mcbio.cluster.follow import Progress, follow
    from mcbio.cluster.plan import Element

    done = set()

    class FinishedJob:
        num_tasks = 1

        def __init__(self, key):
            self.job_id, self.key = key, key

        def done(self):
            return True

        def result(self):
            done.add(self.key)
            if self.key == "e1":  # running e1 makes e3 done (a re-export its records match)
                done.add("e3")
            return {}

    elements = [Element(key=f"e{i}", entry="x:y", cfg=None, done=lambda k=f"e{i}": k in done) for i in range(5)]
    batches = []

    def start(batch):
        batches.append([e.key for e in batch])
        return [(e, FinishedJob(e.key)) for e in batch]

    progress = Progress(total=5)
    assert follow([], progress, echo=False, poll_s=0.0, waiting=elements, start=start, limit=2) == []
    assert all(len(b) <= 2 for b in batches) and "e3" not in sum(batches, [])
    assert sorted(sum(batches, [])) == ["e0", "e1", "e2", "e4"]
    assert progress.done == 5 and progress.running == 0


def test_a_failed_element_shows_its_exception_in_the_launcher_output(tmp_path, capsys):
    assert run(tmp_path, "job=fail", "cells=2") == 1
    err = capsys.readouterr().err
    assert "FAILED fail/cell-0" in err and "FAILED fail/cell-1" in err
    assert "ValueError: selftest failure in cell 1: this message must reach the launcher's output" in err
    assert "_log.err" in err and "launch the same command again to rerun only the others" in err


def test_the_loaded_config_is_not_changed_by_planning_or_running(tmp_path):
    cfg = load_config(SelfTestConfig, None, ["cluster=local", f"out_dir={tmp_path}", "cells=2", "job=count"])
    before = to_yaml(cfg)
    from mcbio.cluster.launcher import LaunchContext, run_plan

    plan = plan_selftest(cfg, LaunchContext("local", None))
    assert run_plan(plan, "local", wait=True) == 0
    assert to_yaml(cfg) == before and cfg.out_dir == str(tmp_path) and cfg.cell == 0
    assert {e.cfg.cell for e in plan.elements()} == {0, 1}


def test_a_relaunch_while_an_element_runs_does_not_run_it_twice(tmp_path):
    """A second launch finds the running element by its lock, waits for it and submits nothing."""
    args = [sys.executable, "-m", "mcbio.cluster.selftest", "cluster=local", f"out_dir={tmp_path}", "job=count",
            "steps=6", "step_seconds=1.0"]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while not (tmp_path / "cell-0" / "counter.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    second = subprocess.run(args, capture_output=True, text=True, timeout=120)
    first.communicate(timeout=120)
    assert first.returncode == 0 and second.returncode == 0, second.stdout + second.stderr
    assert "count/cell-0: running" in second.stdout
    assert "already running in another launch" in second.stdout
    st = state(tmp_path, 0)
    assert st["step"] == 6 and st["attempts"] == 1
    assert len(list((tmp_path / "submitit" / "count").glob("*_submitted.pkl"))) == 1


def test_run_dir_defaults_to_runs_root_name_and_preset(tmp_path):
    cfg = load_config(SelfTestConfig, None, [f"paths.runs_root={tmp_path}", "name=x"])
    assert run_dir_of(cfg) == tmp_path / "x"
