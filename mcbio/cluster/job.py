"""The one picklable job object every launcher submits."""

from __future__ import annotations

import logging
from typing import Any, Callable

import submitit

from mcbio.cluster.distributed import export_torch_distributed_env

log = logging.getLogger(__name__)


class Job(submitit.helpers.Checkpointable):
    """Runs ``entry(cfg)``; on timeout or preemption, requeues itself unchanged.

    Entries are idempotent and resumable by design (Composer autoresume from the run's
    checkpoint folder, result stores that skip finished records), so requeuing the same
    call continues where the killed job stopped.
    """

    def __init__(self, entry: Callable[[Any], Any], cfg: Any) -> None:
        self.entry = entry
        self.cfg = cfg

    def __call__(self) -> Any:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        export_torch_distributed_env()
        return self.entry(self.cfg)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        log.warning("job reached its time limit or was preempted: requeuing to resume")
        return submitit.helpers.DelayedSubmission(Job(self.entry, self.cfg))
