"""The one picklable job object every launcher submits."""

from __future__ import annotations

import importlib
import logging
from typing import Any, Callable, Union

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


class Job(submitit.helpers.Checkpointable):
    """Runs ``entry(cfg)``; on timeout or preemption, requeues itself unchanged.

    Entries are idempotent and resumable by design (Composer autoresume from the run's
    checkpoint folder, result stores that skip finished records), so requeuing the same
    call continues where the killed job stopped.
    """

    def __init__(self, entry: Entry, cfg: Any) -> None:
        self.entry = entry
        self.cfg = cfg

    def __call__(self) -> Any:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        export_torch_distributed_env()
        return resolve_entry(self.entry)(self.cfg)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        log.warning("job reached its time limit or was preempted: requeuing to resume")
        return submitit.helpers.DelayedSubmission(Job(self.entry, self.cfg))
