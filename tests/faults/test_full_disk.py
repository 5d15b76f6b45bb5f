"""A full disk, simulated with a small tmpfs, while writing a record or a checkpoint: nothing written before is lost."""

from __future__ import annotations

import errno
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mcbio.results.records import ResultRecord, ResultStore
from mcbio.train.checkpoints import repair_checkpoints
from tests.conftest import mounted_tmpfs


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 256 KiB tmpfs."""
    with mounted_tmpfs(tmp_path / "disk", "size=256k") as folder:
        yield folder


def fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` until at most ``leave`` bytes are free; return the filler (delete it to free the disk)."""
    filler = disk / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                st = os.statvfs(disk)
                free = st.f_bavail * st.f_frsize
                if free <= leave:
                    break
                handle.write(b"\0" * min(free - leave, 4096))
                handle.flush()
        except OSError as err:
            assert err.errno == errno.ENOSPC
    return filler


def record(seed: int, note: str = "") -> ResultRecord:
    return ResultRecord(model="m", task="t", seed=seed, metric="f1", value=0.5, config_hash="h", commit="c",
                        extra={"primary": True, "note": note})


def test_a_record_written_on_a_full_disk_fails_and_leaves_every_earlier_record_whole(small_disk):
    store = ResultStore(small_disk / "results")
    assert store.add([record(1), record(2)], "exp") == 2
    filler = fill(small_disk, leave=4096)  # room for part of the record: a partial line is written
    with pytest.raises(OSError) as err:
        store.add([record(3, note="x" * 20000)], "exp")  # larger than any space left
    assert err.value.errno == errno.ENOSPC
    text = (small_disk / "results" / "records" / "exp.jsonl").read_text()
    assert text.endswith("\n") and len(text.splitlines()) == 2  # no partial line left behind
    assert sorted(r.seed for r in store.records()) == [1, 2]
    filler.unlink()
    assert store.add([record(3, note="x" * 20000)], "exp") == 1  # the relaunch writes it once there is room
    assert sorted(r.seed for r in store.records()) == [1, 2, 3]


def test_a_checkpoint_cut_by_a_full_disk_is_set_aside_and_the_run_resumes_from_the_one_before(small_disk):
    folder = small_disk / "checkpoints"
    folder.mkdir()
    torch.save({"w": torch.ones(1000)}, folder / "ep0-ba2-rank0.pt")
    (folder / "latest-rank0.pt").symlink_to("ep0-ba2-rank0.pt")
    fill(small_disk, leave=8192)
    with pytest.raises((OSError, RuntimeError)):  # torch reports a failed write as RuntimeError
        torch.save({"w": torch.ones(100_000)}, folder / "ep0-ba4-rank0.pt")
    cut = folder / "ep0-ba4-rank0.pt"
    assert cut.exists()  # what the disk took of it
    (folder / "latest-rank0.pt").unlink()
    (folder / "latest-rank0.pt").symlink_to(cut.name)  # as if Composer had moved latest before the failure
    repairs = repair_checkpoints(folder)
    assert any(str(cut) in line and "set aside" in line for line in repairs), repairs
    assert os.readlink(folder / "latest-rank0.pt") == "ep0-ba2-rank0.pt"
    assert torch.load(folder / "latest-rank0.pt")["w"].shape == (1000,)
