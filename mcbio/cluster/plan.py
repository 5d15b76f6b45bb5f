"""What a launch submits: stages of job elements, each with its own config, resources and ``done`` test.

Every launcher builds a :class:`Plan` from its frozen run config (a *planner*), and
:func:`mcbio.cluster.launcher.launch` submits the elements that are neither done nor
already queued or running. Stages run in order: on Slurm a stage's array waits for the
stages it names in ``after`` through an ``afterok`` dependency; locally the launcher
runs them one after the other.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from mcbio.config.schema import ClusterResources, JobNeeds

_UNSAFE = re.compile(r"[^A-Za-z0-9_.=+-]+")


@dataclass(frozen=True)
class Element:
    """One job: ``entry(cfg)`` in a submitit job, identified by ``key`` across launches.

    ``done`` is evaluated by the launcher only (it is never pickled into the job), before
    submitting: an element that is done is not submitted again. ``describe`` turns the
    job's return value into the line printed when it finishes.
    """

    key: str
    entry: str
    cfg: Any
    done: Callable[[], bool] = field(default=lambda: False, compare=False, repr=False)
    describe: Optional[Callable[[Any], str]] = field(default=None, compare=False, repr=False)

    @property
    def file_key(self) -> str:
        """``key`` as a file name: readable prefix + a short hash (keys may hold slashes)."""
        digest = hashlib.sha1(self.key.encode("utf-8")).hexdigest()[:8]
        return f"{_UNSAFE.sub('_', self.key)[:80]}-{digest}"


@dataclass(frozen=True)
class Stage:
    """Elements that share resources and are submitted as one array."""

    name: str
    elements: tuple[Element, ...]
    resources: ClusterResources
    # Names of earlier stages whose elements must all succeed before this one starts.
    after: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    """Everything one launch may submit, and the lines it prints first."""

    name: str
    run_dir: Path
    stages: tuple[Stage, ...]
    # Printed once at launch (caps a preset applies, data left out, ...).
    notes: tuple[str, ...] = ()

    def elements(self) -> list[Element]:
        return [e for s in self.stages for e in s.elements]

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"plan {self.name!r} has no stage {name!r}")


def with_needs(resources: ClusterResources, needs: JobNeeds) -> ClusterResources:
    """``resources`` (the profile's) with a stage's own needs; GPUs are capped by what the profile's node has.

    A stage states what one element needs (e.g. one GPU for a fine-tuning run); the
    profile states the cluster (partition, account, setup lines, GPUs per node). Asking
    a CPU profile for a GPU gives none rather than an unsatisfiable job.
    """
    changes = {f.name: getattr(needs, f.name) for f in dataclasses.fields(needs) if getattr(needs, f.name) is not None}
    if "gpus_per_node" in changes:
        changes["gpus_per_node"] = min(changes["gpus_per_node"], resources.gpus_per_node)
        changes.setdefault("tasks_per_node", max(1, changes["gpus_per_node"]) if changes["gpus_per_node"] else 1)
    return dataclasses.replace(resources, **changes)


def single_task(resources: ClusterResources, timeout_min: float | None = None, cpus: int | None = None) -> ClusterResources:
    """A one-process, GPU-free job under the same profile (merges, tables, statistics)."""
    return dataclasses.replace(resources, nodes=1, gpus_per_node=0, tasks_per_node=1,
                               cpus_per_task=cpus or min(resources.cpus_per_task, 4),
                               timeout_min=timeout_min or min(resources.timeout_min, 60))
