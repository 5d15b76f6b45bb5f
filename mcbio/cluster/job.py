"""The one picklable job object every launcher submits."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import submitit
from filelock import FileLock, Timeout

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
                Path(self.running_lock).parent.mkdir(parents=True, exist_ok=True)
                # Multi-task jobs: every rank runs this; only one holds the lock, the others
                # must not wait for it.
                lock = FileLock(self.running_lock)
                with contextlib.suppress(Timeout):
                    lock.acquire(timeout=0)
                    stack.callback(lock.release)
            return resolve_entry(self.entry)(self.cfg)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        log.warning("job reached its time limit or was preempted: requeuing to resume")
        return submitit.helpers.DelayedSubmission(Job(self.entry, self.cfg, self.slots, self.running_lock, self.threads))
