"""Pretraining under faults: a killed launch, a truncated or deleted checkpoint. Nothing done is lost.

Each launch is the README's smoke pretraining (pretrain stage only) in its own folders;
an uninterrupted run of the same config is the reference its final weights must match.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mcbio.results.records import ResultStore
from mcbio.train.checkpoints import checkpoint_problem, repair_checkpoints
from tests.conftest import REPO, run_launcher

LAUNCH = REPO / "experiments" / "base_clm_detour" / "launch.py"


def smoke_args(root: Path) -> list[str]:
    return ["preset=smoke", "stages=[pretrain]", f"out_dir={root / 'run'}", f"evaluation.results_dir={root / 'results'}"]


def weights(root: Path) -> dict[str, torch.Tensor]:
    return load_file(str(root / "run" / "hf" / "model.safetensors"))


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def run_records(root: Path) -> list:
    return ResultStore(root / "results").runs()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reference")
    run_launcher("base_clm_detour", *smoke_args(root))
    return root


def checkpoints(root: Path) -> Path:
    return root / "run" / "checkpoints"


# --------------------------------------------------------------------------- unit: the repair itself


def saved(path: Path, value: float) -> Path:
    torch.save({"w": torch.full((64,), value)}, path)
    return path


def test_a_truncated_newest_checkpoint_is_set_aside_and_latest_points_at_the_intact_one(tmp_path):
    old = saved(tmp_path / "ep0-ba2-rank0.pt", 1.0)
    new = saved(tmp_path / "ep0-ba4-rank0.pt", 2.0)
    (tmp_path / "latest-rank0.pt").symlink_to(new.name)
    new.write_bytes(new.read_bytes()[:200])  # a job killed while writing
    assert checkpoint_problem(old) is None and checkpoint_problem(new)
    repairs = repair_checkpoints(tmp_path)
    assert repairs[0].startswith(f"checkpoint {new} is unreadable (") and "set aside as ep0-ba4-rank0.pt.corrupt" in repairs[0]
    assert repairs[1] == "resuming from ep0-ba2-rank0.pt (latest pointed at ep0-ba4-rank0.pt)"
    assert os.readlink(tmp_path / "latest-rank0.pt") == old.name
    assert (tmp_path / "ep0-ba4-rank0.pt.corrupt").stat().st_size == 200  # kept, not deleted
    assert torch.load(tmp_path / "latest-rank0.pt")["w"][0] == 1.0
    assert repair_checkpoints(tmp_path) == []  # nothing left to repair


def test_a_checkpoint_deleted_by_hand_leaves_latest_pointing_at_the_newest_one_left(tmp_path):
    old = saved(tmp_path / "ep0-ba2-rank0.pt", 1.0)
    (tmp_path / "latest-rank0.pt").symlink_to("ep0-ba4-rank0.pt")  # its target was deleted
    assert repair_checkpoints(tmp_path) == ["resuming from ep0-ba2-rank0.pt (latest pointed at ep0-ba4-rank0.pt)"]
    assert os.readlink(tmp_path / "latest-rank0.pt") == old.name
    old.unlink()
    assert repair_checkpoints(tmp_path) == [f"no intact checkpoint left for rank 0 in {tmp_path}: it trains from the start"]
    assert not (tmp_path / "latest-rank0.pt").is_symlink()


# --------------------------------------------------------------------------- the real launch


def test_a_relaunch_with_a_truncated_newest_checkpoint_resumes_from_the_intact_one(reference, tmp_path):
    import shutil

    # The reference run's folders, as a finished run (a run's state is found by content, not by path).
    for sub in ("run", "results"):
        shutil.copytree(reference / sub, tmp_path / sub, symlinks=True)
    ckpts = sorted(checkpoints(tmp_path).glob("ep*-rank0.pt"), key=lambda p: int(p.name.split("-ba")[1].split("-")[0]))
    assert len(ckpts) >= 2, "the smoke run must save at least two checkpoints"
    newest = ckpts[-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    shutil.rmtree(tmp_path / "run" / "hf")  # the export is gone too: the element must train again
    proc = run_launcher("base_clm_detour", *smoke_args(tmp_path))
    assert f"checkpoint {newest} is unreadable" in proc.stdout and f"resuming from {ckpts[-2].name}" in proc.stdout
    assert (newest.parent / (newest.name + ".corrupt")).is_file()
    assert_same_weights(weights(tmp_path), weights(reference))


def test_a_sigkilled_launch_relaunched_ends_with_the_reference_weights_and_counts_both_attempts(reference, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    first = subprocess.Popen([sys.executable, str(LAUNCH), *smoke_args(tmp_path)], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    attempts = tmp_path / "run" / "attempts.json"

    def beaten() -> bool:  # the attempt's clock has ticked at least once since it started
        try:
            (a,) = json.loads(attempts.read_text())
            return a["last_seen"] > a["started"]
        except (OSError, ValueError):
            return False

    deadline = time.time() + 600
    while not (list(checkpoints(tmp_path).glob("ep*-rank0.pt")) and beaten()) and time.time() < deadline \
            and first.poll() is None:
        time.sleep(0.2)
    assert first.poll() is None, "the smoke run ended before its first checkpoint: nothing was killed"
    time.sleep(1.0)
    # The launcher and its job (submitit starts it in the same session): everything, at once, with no warning.
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=60)
    subprocess.run(["pkill", "-KILL", "-f", str(tmp_path / "run")], check=False)
    time.sleep(1.0)
    assert not (tmp_path / "run" / "hf").exists()
    killed_for = json.loads((tmp_path / "run" / "attempts.json").read_text())
    assert len(killed_for) == 1 and killed_for[0]["last_seen"] > killed_for[0]["started"]

    proc = run_launcher("base_clm_detour", *smoke_args(tmp_path))
    assert "after 2 attempts" in proc.stdout
    assert_same_weights(weights(tmp_path), weights(reference))
    (record,) = run_records(tmp_path)
    first_attempt_s = killed_for[0]["last_seen"] - killed_for[0]["started"]
    assert record.extra["attempts"] == 2 and record.extra["resumed_at_batch"] > 0
    assert record.wall_s >= first_attempt_s + record.extra["attempt_wall_s"] * 0.9
    # The relaunch recorded the time: a third launch finds the run done and records nothing more.
    again = run_launcher("base_clm_detour", *smoke_args(tmp_path))
    assert "nothing to run" in again.stdout and len(run_records(tmp_path)) == 1
