"""Which elements of a run are already queued or running, across launches.

Two signals, both kept under the run directory (``<run_dir>/.mcbio/``):

* every element holds ``running/<element>.lock`` (a ``filelock`` lock) while it runs, on
  any backend; the kernel drops the lock when the process dies, so a killed element never
  looks alive;
* ``jobs.json`` records the Slurm job id of every submitted element, so that an element
  still waiting in the queue (not yet holding its lock) is found through ``squeue``.

A relaunch submits an element only when neither says it is alive.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Iterable

from filelock import FileLock, Timeout

from mcbio.files import write_json_atomic

# squeue states of a job that will still run (or is running).
ALIVE_STATES = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED",
                "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT"}


# Beside each running lock: the id of the job holding it (see mcbio.cluster.job.hold_running_lock).
OWNER_SUFFIX = ".owner"


def state_dir(run_dir: Path) -> Path:
    return Path(run_dir) / ".mcbio"


def running_lock(run_dir: Path, file_key: str) -> Path:
    return state_dir(run_dir) / "running" / f"{file_key}.lock"


def is_running(lock_path: Path) -> bool:
    """True when another process holds the element's lock."""
    if not lock_path.exists():
        return False
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


class JobRegistry:
    """``jobs.json``: element key -> the Slurm job that runs it (local jobs need no entry)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = state_dir(run_dir) / "jobs.json"
        self._lock = FileLock(str(self.path) + ".lock")

    def read(self) -> dict[str, dict]:
        if not self.path.is_file():
            return {}
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return {}

    def record(self, entries: dict[str, dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            data = self.read()
            data.update({k: {**v, "submitted": time.time()} for k, v in entries.items()})
            write_json_atomic(self.path, data, indent=1)


def slurm_alive(job_ids: Iterable[str]) -> set[str]:
    """The given Slurm job ids (``123`` or array tasks ``123_4``) that squeue still lists as alive."""
    ids = sorted(set(job_ids))
    if not ids:
        return set()
    base = sorted({i.split("_", 1)[0] for i in ids})
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(base)],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        # squeue refuses ids it no longer knows with an error: then none of them is alive.
        if "Invalid job id" in out.stderr:
            return set()
        raise RuntimeError(f"squeue failed: {out.stderr.strip()}")
    alive = set()
    for line in out.stdout.splitlines():
        job_id, _, state = line.strip().partition("|")
        if state in ALIVE_STATES:
            alive.add(job_id)
    return alive & set(ids)


def alive_elements(run_dir: Path, keys_to_file: dict[str, str], backend: str) -> dict[str, str]:
    """Element key -> why it is alive ("running", "queued as job 123_4") for those that are."""
    alive: dict[str, str] = {}
    for key, file_key in keys_to_file.items():
        if is_running(running_lock(run_dir, file_key)):
            alive[key] = "running"
    if backend == "slurm":
        recorded = {k: v["job_id"] for k, v in JobRegistry(run_dir).read().items()
                    if k in keys_to_file and k not in alive and v.get("backend") == "slurm"}
        queued = slurm_alive(recorded.values())
        for key, job_id in recorded.items():
            if job_id in queued:
                alive[key] = f"queued or running as Slurm job {job_id}"
    return alive
