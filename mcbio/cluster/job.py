"""The one picklable job object every launcher submits."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import submitit
from filelock import FileLock, Timeout

from mcbio.cluster.registry import OWNER_SUFFIX, is_running

from mcbio.cluster.distributed import export_torch_distributed_env

log = logging.getLogger(__name__)


def resolve_entry(entry: str) -> Callable[[Any], Any]:
    """``"package.module:function"``, imported only inside the job.

    Launchers never import torch, Composer or transformers, so a dry run or a config
    error answers in well under a second.
    """
    module, _, name = entry.partition(":")
    if not module or not name:
        raise ValueError(f"entry {entry!r} is not of the form 'package.module:function'")
    return getattr(importlib.import_module(module), name)


@contextlib.contextmanager
def concurrency_slot(folder: Path, slots: int, poll_s: float = 0.5) -> Iterator[int]:
    """Hold one of ``slots`` file locks under ``folder`` for the duration of the block.

    Slurm caps a job array's parallelism itself (``--array=0-N%P``); submitit's local
    executor starts every element at once, so local arrays take a slot first and wait,
    asleep, for a free one. A killed job's lock is released by the kernel.
    """
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        for index in range(slots):
            lock = FileLock(str(folder / f"slot-{index}.lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            try:
                yield index
            finally:
                lock.release()
            return
        time.sleep(poll_s)


@dataclasses.dataclass(frozen=True)
class AlreadyRunning:
    """What a job returns instead of running when another launch's job holds the element's lock.

    Two launches that both found the element pending (neither had started yet) submit it
    twice; the second job to start steps aside, and its launcher waits for the first.
    """

    lock: str
    owner: str


def _job_identity() -> tuple[str, int]:
    """(job id, global rank) of this submitit job; a plain call (tests) is job ``pid-<pid>``, rank 0."""
    try:
        env = submitit.JobEnvironment()
        return str(env.job_id), int(env.global_rank)
    except RuntimeError:  # not inside a submitit job
        return f"pid-{os.getpid()}", 0


def _read_owner(lock_path: Path) -> str:
    try:
        return (lock_path.parent / (lock_path.name + OWNER_SUFFIX)).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def hold_running_lock(stack: contextlib.ExitStack, lock_path: Path, owner_wait_s: float = 120.0,
                      poll_s: float = 0.5) -> Optional[AlreadyRunning]:
    """Take the element's running lock for this job, or say which job holds it.

    Rank 0 takes the lock and writes its job id beside it; the other ranks of a multi-task
    job never take it (they would wait forever on their own rank 0) but read the owner
    file, so that all ranks of a job that lost the race step aside together.
    """
    job_id, rank = _job_identity()
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    owner_file = lock_path.parent / (lock_path.name + OWNER_SUFFIX)
    if rank == 0:
        lock = FileLock(str(lock_path))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return AlreadyRunning(str(lock_path), _read_owner(lock_path) or "unknown")
        stack.callback(lock.release)
        owner_file.write_text(job_id, encoding="utf-8")
        return None
    deadline = time.time() + owner_wait_s
    while time.time() < deadline:
        owner = _read_owner(lock_path)
        if owner == job_id:
            return None
        if owner and is_running(lock_path):
            # Held, and not by our rank 0 (which writes its id right after taking it): give it a moment.
            time.sleep(poll_s)
            if _read_owner(lock_path) != job_id:
                return AlreadyRunning(str(lock_path), owner)
        time.sleep(poll_s)
    return AlreadyRunning(str(lock_path), _read_owner(lock_path) or "unknown")


class Job(submitit.helpers.Checkpointable):
    """Runs ``entry(cfg)``; on timeout or preemption, requeues itself unchanged.

    Entries are idempotent and resumable by design (Composer autoresume from the run's
    checkpoint folder, result stores that skip finished records, datatrove completion
    markers), so requeuing the same call continues where the killed job stopped.
    ``running_lock`` is held while the entry runs: a relaunch sees the element alive
    (see :mod:`mcbio.cluster.registry`).
    """

    def __init__(self, entry: str, cfg: Any, slots: Optional[tuple[str, int]] = None,
                 running_lock: Optional[str] = None, threads: Optional[int] = None) -> None:
        self.entry = entry
        self.cfg = cfg
        # (lock folder, number of slots): set for local arrays, see concurrency_slot.
        self.slots = slots
        self.running_lock = running_lock
        # CPU threads of the job's numerical libraries (set before the entry imports torch).
        self.threads = threads

    def __call__(self) -> Any:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        if self.threads:
            # Local elements running side by side would each start one thread per core.
            for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ[var] = str(self.threads)
        export_torch_distributed_env()
        with contextlib.ExitStack() as stack:
            if self.slots is not None:
                stack.enter_context(concurrency_slot(Path(self.slots[0]), self.slots[1]))
            if self.running_lock is not None:
                busy = hold_running_lock(stack, Path(self.running_lock))
                if busy is not None:
                    log.warning("another launch's job (%s) is running this element: not running it twice", busy.owner)
                    return busy
            return resolve_entry(self.entry)(self.cfg)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        log.warning("job reached its time limit or was preempted: requeuing to resume")
        return submitit.helpers.DelayedSubmission(Job(self.entry, self.cfg, self.slots, self.running_lock, self.threads))
