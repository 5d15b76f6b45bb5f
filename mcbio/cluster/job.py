"""The one picklable job object every launcher submits."""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import submitit

from mcbio.cluster.distributed import export_torch_distributed_env

log = logging.getLogger(__name__)

# A callable, or "package.module:function" imported only inside the job, so that launchers
# (dry runs, config errors) answer without importing torch, Composer or transformers.
Entry = Union[Callable[[Any], Any], str]


def resolve_entry(entry: Entry) -> Callable[[Any], Any]:
    if callable(entry):
        return entry
    module, _, name = entry.partition(":")
    if not module or not name:
        raise ValueError(f"entry {entry!r} is not of the form 'package.module:function'")
    return getattr(importlib.import_module(module), name)


@contextlib.contextmanager
def concurrency_slot(folder: Path, slots: int, poll_s: float = 0.5) -> Iterator[int]:
    """Hold one of ``slots`` file locks under ``folder`` for the duration of the block.

    Slurm caps a job array's parallelism itself; submitit's local executor starts every
    element at once, so local arrays take a slot first and wait, asleep, for a free one.
    The kernel releases a lock when its process dies, so a killed job never keeps a slot.
    """
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        for index in range(slots):
            handle = open(folder / f"slot-{index}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                yield index
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        time.sleep(poll_s)


class Job(submitit.helpers.Checkpointable):
    """Runs ``entry(cfg)``; on timeout or preemption, requeues itself unchanged.

    Entries are idempotent and resumable by design (Composer autoresume from the run's
    checkpoint folder, result stores that skip finished records), so requeuing the same
    call continues where the killed job stopped.
    """

    def __init__(self, entry: Entry, cfg: Any, slots: Optional[tuple[str, int]] = None) -> None:
        self.entry = entry
        self.cfg = cfg
        # (lock folder, number of slots): set for local arrays, see concurrency_slot.
        self.slots = slots

    def __call__(self) -> Any:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        export_torch_distributed_env()
        if self.slots is None:
            return resolve_entry(self.entry)(self.cfg)
        with concurrency_slot(Path(self.slots[0]), self.slots[1]):
            return resolve_entry(self.entry)(self.cfg)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        log.warning("job reached its time limit or was preempted: requeuing to resume")
        return submitit.helpers.DelayedSubmission(Job(self.entry, self.cfg, self.slots))
