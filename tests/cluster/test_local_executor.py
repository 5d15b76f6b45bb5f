"""The launcher path on submitit's local executor: single jobs, arrays, timeout -> requeue -> resume."""

from __future__ import annotations

import json
import os

from mcbio.cluster import submit, submit_array
from mcbio.cluster.launch import launch
from mcbio.cluster.selftest import SelfTestConfig
from mcbio.config import load_config


def local_cfg(tmp_path, **overrides) -> SelfTestConfig:
    args = ["cluster=local", f"out_dir={tmp_path}", "tracking.wandb=false"]
    args += [f"{k}={v}" for k, v in overrides.items()]
    return load_config(SelfTestConfig, None, args)


def test_local_job_runs_in_another_process(tmp_path):
    job = submit("mcbio.cluster.selftest:probe", local_cfg(tmp_path))
    info = job.result()
    assert info["pid"] != os.getpid()
    assert json.loads((tmp_path / "probe-0.json").read_text())["pid"] == info["pid"]


def test_local_array_runs_every_cell(tmp_path):
    cfgs = [local_cfg(tmp_path, cell=i) for i in range(3)]
    jobs = submit_array("mcbio.cluster.selftest:probe", cfgs, tmp_path / "submitit")
    results = [j.result() for j in jobs]
    assert sorted(r["cell"] for r in results) == [0, 1, 2]
    assert len({r["pid"] for r in results}) == 3
    assert sorted(p.name for p in tmp_path.glob("probe-*.json")) == ["probe-0.json", "probe-1.json", "probe-2.json"]


def test_timed_out_local_job_requeues_and_resumes(tmp_path):
    # 12 s limit, signalled 8 s before it: the first attempt is interrupted around step 4
    # of 12 and requeued; the second resumes from the saved step instead of from 0.
    cfg = local_cfg(tmp_path, steps=12, step_seconds=1.0, **{"resources.timeout_min": 0.2, "resources.signal_delay_s": 8})
    job = submit("mcbio.cluster.selftest:count", cfg)
    state = job.result()
    assert state["step"] == 12
    assert state["attempts"] >= 2
    assert state["resumed_from"][0] == 0 and state["resumed_from"][1] > 0


def test_launch_waits_for_a_local_job_and_echoes_its_log(tmp_path, capsys):
    rc = launch(SelfTestConfig, "mcbio.cluster.selftest:probe", None, ["cluster=local", f"out_dir={tmp_path}"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "on local" in out and "done:" in out


def test_local_array_respects_its_parallelism(tmp_path):
    # Three 2-second jobs with one slot run one after another, never overlapping.
    cfgs = [local_cfg(tmp_path, cell=i, steps=2, step_seconds=1.0, **{"resources.array_parallelism": 1,
                                                                       "out_dir": tmp_path / f"c{i}"})
            for i in range(3)]
    jobs = submit_array("mcbio.cluster.selftest:timed_count", cfgs, tmp_path / "submitit")
    spans = sorted((r["started"], r["finished"]) for r in (j.result() for j in jobs))
    assert all(prev_end <= start for (_, prev_end), (start, _) in zip(spans, spans[1:]))
