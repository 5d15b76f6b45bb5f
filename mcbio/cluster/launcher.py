"""The one launcher: load -> check -> plan -> (dry run) -> submit what is not done or alive -> follow.

Every ``launch.py`` under ``experiments/`` and ``ablations/`` is one call of :func:`launch`
with its schema, its config file and its *planner* (a function of the frozen run config
and a :class:`LaunchContext` that returns a :class:`~mcbio.cluster.plan.Plan`). Planners run the
launch-time checks (paths, tasks, first records, metrics) and raise one
:class:`~mcbio.config.loader.ConfigError` listing every problem, so nothing is submitted
when something is wrong.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import submitit

from mcbio.cluster.executor import check_backend, make_executor, resolve_cluster
from mcbio.cluster.follow import PREFIX, Progress, follow, say
from mcbio.cluster.job import Job
from mcbio.cluster.plan import Element, Plan, Stage
from mcbio.cluster.registry import JobRegistry, alive_elements, is_running, running_lock, state_dir
from mcbio.config.loader import ConfigError, load_config, to_yaml
from mcbio.config.schema import RunConfig
from mcbio.errors import run_command
from mcbio.files import write_text_atomic

T = TypeVar("T", bound=RunConfig)


@dataclasses.dataclass(frozen=True)
class LaunchContext:
    """What a planner knows besides the config: where it runs and which file it was loaded from."""

    backend: str
    config_file: Path | None
    # Paths an earlier stage of the same plan writes (a study's component planners accept them absent).
    produced: tuple[str, ...] = ()


Planner = Callable[[Any, LaunchContext], Plan]



def run_dir_of(cfg: RunConfig) -> Path:
    """``out_dir`` or ``<paths.runs_root>/<name>[-<preset>]``, absolute (relative paths: the working directory)."""
    out = Path(cfg.out_dir) if cfg.out_dir else Path(cfg.paths.runs_root) / run_name(cfg)
    return out.expanduser().resolve()


def run_name(cfg: RunConfig) -> str:
    """The run's name: ``name``, suffixed with the preset (``base_clm_detour-smoke``). Records use it."""
    return f"{cfg.name}-{cfg.preset}" if cfg.preset else cfg.name


# --------------------------------------------------------------------------- submission


def local_parallelism(stage: Stage, n_elements: int) -> int:
    """Elements of a local stage running at once: the stage's array parallelism, at most its elements."""
    return min(n_elements, max(1, stage.resources.array_parallelism))


def submit_stage(plan: Plan, stage: Stage, elements: Sequence[Element], backend: str,
                 dependency: str | None = None, at_once: int | None = None) -> list[tuple[Element, submitit.Job]]:
    """One array (Slurm) or batch (local) for ``elements`` of ``stage``; jobs are recorded in the registry.

    ``at_once`` (local): how many of the stage's elements run side by side, when the launcher starts
    them a few at a time (they share this machine's cores)."""
    folder = plan.run_dir / "submitit" / stage.name
    executor = make_executor(backend, stage.resources, folder, f"{plan.name}-{stage.name}", dependency)
    slots, threads = None, None
    if backend == "local":
        at_once = at_once or local_parallelism(stage, len(elements))
        if at_once > 1 or len(elements) > 1:
            slots = (str(state_dir(plan.run_dir) / "slots" / stage.name), at_once)
        # This machine's cores, shared by the elements (and tasks) that run at once.
        threads = max(1, (os.cpu_count() or 1) // (at_once * stage.resources.tasks_per_node))
    jobs_of = [Job(e.entry, e.cfg, slots, str(running_lock(plan.run_dir, e.file_key)), threads) for e in elements]
    # A launch from inside a Slurm job (a grid cell, a test) must not leak that job's
    # SLURM_* variables into the new jobs.
    with submitit.helpers.clean_env():
        if len(jobs_of) == 1:
            jobs = [executor.submit(jobs_of[0])]
        else:
            with executor.batch():
                pending = [executor.submit(j) for j in jobs_of]
            jobs = list(pending)
    if backend == "slurm":
        JobRegistry(plan.run_dir).record({e.key: {"job_id": str(j.job_id), "backend": backend, "stage": stage.name,
                                                  "stderr": str(j.paths.stderr)} for e, j in zip(elements, jobs)})
    return list(zip(elements, jobs))


def element_states(plan: Plan, backend: str) -> dict[str, str]:
    """Element key -> ``done`` | ``pending`` | why it is alive (queued or running elsewhere)."""
    states = {e.key: "done" for e in plan.elements() if e.done()}
    undone = {e.key: e.file_key for e in plan.elements() if e.key not in states}
    states.update(alive_elements(plan.run_dir, undone, backend))
    for key in undone:
        states.setdefault(key, "pending")
    return states


def print_plan(plan: Plan, states: dict[str, str], prefix: str = PREFIX) -> None:
    """One line per element, or per stage when a stage is large."""
    stream = sys.stdout
    for stage in plan.stages:
        counts: dict[str, int] = {}
        for e in stage.elements:
            state = states[e.key] if states[e.key] in ("done", "pending", "running") else "queued"
            counts[state] = counts.get(state, 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        res = stage.resources
        print(f"{prefix} {plan.name}/{stage.name}: {len(stage.elements)} element(s): {summary} "
              f"[{res.nodes} node(s) x {res.tasks_per_node} task(s), {res.gpus_per_node} GPU(s), "
              f"{res.cpus_per_task} CPU(s)/task, {res.timeout_min:g} min]", file=stream)
        if len(stage.elements) <= 30:
            for e in stage.elements:
                print(f"{prefix}   {e.key}: {states[e.key]}", file=stream)
    stream.flush()


def _wait_until_not_running(plan: Plan, elements: Sequence[Element], poll_s: float = 2.0) -> None:
    locks = [running_lock(plan.run_dir, e.file_key) for e in elements]
    while any(is_running(p) for p in locks):
        time.sleep(poll_s)


def run_plan(plan: Plan, backend: str, wait: bool) -> int:
    """Submit the pending elements stage by stage and follow them; 0 when everything is done."""
    states = element_states(plan, backend)
    print_plan(plan, states)
    progress = Progress(total=len(states), done=sum(1 for s in states.values() if s == "done"))
    if all(s == "done" for s in states.values()):
        say(f"{plan.name}: nothing to run, every element is done")
        return 0
    failed: list[tuple[Element, submitit.Job]] = []
    not_started: list[str] = []
    if backend == "slurm":
        submitted: dict[str, list[tuple[Element, submitit.Job]]] = {}
        registry = JobRegistry(plan.run_dir).read()
        for stage in plan.stages:
            pending = [e for e in stage.elements if states[e.key] == "pending"]
            if not pending:
                continue
            deps = [str(j.job_id) for name in stage.after for _, j in submitted.get(name, [])]
            # Elements of earlier launches still queued or running must succeed first too.
            deps += [registry[e.key]["job_id"] for name in stage.after for e in plan.stage(name).elements
                     if states[e.key] not in ("done", "pending") and e.key in registry]
            jobs = submit_stage(plan, stage, pending, backend, f"afterok:{':'.join(deps)}" if deps else None)
            submitted[stage.name] = jobs
            say(f"{plan.name}/{stage.name}: submitted {len(jobs)} element(s) as Slurm job(s) "
                f"{_id_range(jobs)}" + (f", after {len(deps)} job(s) of {', '.join(stage.after)}" if deps else ""))
        alive = sum(1 for st in states.values() if st not in ("done", "pending"))
        if not submitted:
            say(f"{plan.name}: nothing new submitted: {alive} element(s) still queued or running from an earlier "
                "launch; relaunch the same command once they end to see what is done")
            return 0
        if not wait:
            say(f"{plan.name}: not waiting (wait=false); relaunch the same command to see what is done")
            return 0
        order = [pair for stage in plan.stages for pair in submitted.get(stage.name, [])]
        failed = _follow_slurm(plan, order, progress)
    else:
        failed_stages: set[str] = set()
        for stage in plan.stages:
            blocked = [name for name in stage.after if name in failed_stages]
            pending = [e for e in stage.elements if states[e.key] == "pending"]
            alive = [e for e in stage.elements if states[e.key] not in ("done", "pending")]
            if blocked:
                not_started += [e.key for e in pending]
                failed_stages.add(stage.name)
                continue
            if alive:
                say(f"{plan.name}/{stage.name}: {len(alive)} element(s) already running in another launch; "
                    "not submitted again, waiting for them")
            started = time.time()
            at_once = local_parallelism(stage, len(pending))
            if pending:
                say(f"{plan.name}/{stage.name}: running {len(pending)} element(s) locally ({at_once} at a time)")
            stage_failed = follow([], progress, echo=True, waiting=pending, limit=at_once,
                                  start=lambda elements, stage=stage, at_once=at_once: submit_stage(
                                      plan, stage, elements, backend, at_once=at_once))
            _wait_until_not_running(plan, alive)
            lost = [e for e in alive if not e.done()]
            for e in lost:
                say(f"FAILED {e.key}: it ran in another launch and is not done", err=True)
            if stage_failed or lost:
                failed_stages.add(stage.name)
            failed += stage_failed
            if alive and not lost:
                progress.done += len(alive)
            if pending or alive:
                say(f"{plan.name}/{stage.name}: stage {'FAILED' if stage.name in failed_stages else 'done'} "
                    f"in {time.time() - started:.0f} s [{progress.done}/{progress.total} elements done]")
    return _closing(plan, failed, not_started, progress)


def _id_range(jobs: list[tuple[Element, submitit.Job]]) -> str:
    ids = [str(j.job_id) for _, j in jobs]
    return ids[0] if len(ids) == 1 else f"{ids[0]} .. {ids[-1]}"


def _follow_slurm(plan: Plan, order: list[tuple[Element, submitit.Job]], progress: Progress) -> list:
    """Follow the arrays stage by stage; when an element fails, cancel the stages that wait on it.

    An ``afterok`` dependency that can no longer be met leaves the job pending forever
    (``DependencyNeverSatisfied``): cancelling it is what ends the launch.
    """
    failed: list = []
    by_stage: dict[str, list] = {}
    for element, job in order:
        stage = next(s.name for s in plan.stages if element in s.elements)
        by_stage.setdefault(stage, []).append((element, job))
    failed_stages: set[str] = set()
    following = time.time()
    for stage in plan.stages:
        pairs = by_stage.get(stage.name, [])
        if not pairs:
            continue
        if any(name in failed_stages for name in stage.after):
            for _, job in pairs:
                job.cancel(check=False)
            say(f"{plan.name}/{stage.name}: cancelled {len(pairs)} element(s): a stage they wait for failed", err=True)
            failed_stages.add(stage.name)
            failed += pairs
            continue
        stage_failed = follow(pairs, progress, echo=False)
        if stage_failed:
            failed_stages.add(stage.name)
        failed += stage_failed
        say(f"{plan.name}/{stage.name}: stage {'FAILED' if stage_failed else 'done'}, {time.time() - following:.0f} s "
            f"after submission [{progress.line()}]")
    return failed


def _closing(plan: Plan, failed: list, not_started: list[str], progress: Progress) -> int:
    if not failed and not not_started:
        say(f"{plan.name}: all {progress.total} element(s) done; run directory {plan.run_dir}")
        return 0
    if failed:
        say(f"{plan.name}: {len(failed)} element(s) failed: " + ", ".join(e.key for e, _ in failed), err=True)
        for e, job in failed:
            say(f"  {e.key}: {job.paths.stderr}", err=True)
    if not_started:
        say(f"{plan.name}: {len(not_started)} element(s) not started because a stage they need failed", err=True)
    say(f"{plan.name}: finished elements are kept; launch the same command again to rerun only the others", err=True)
    return 1


# --------------------------------------------------------------------------- entry point


def launch(schema: type[T], config_file: str | Path | None, planner: Planner,
           argv: Sequence[str] | None = None) -> int:
    """Load ``schema`` from ``config_file`` + ``argv`` overrides, plan it, then submit and follow.

    A user error (a config key, an unreadable file, a torn results store) ends it with one
    ``error:`` line and exit 2; ``--debug`` among the overrides (or ``MCBIO_DEBUG=1``) shows the traceback.
    """
    return run_command(lambda rest: _launch(schema, config_file, planner, rest),
                       list(sys.argv[1:] if argv is None else argv))


def _launch(schema: type[T], config_file: str | Path | None, planner: Planner, argv: list[str]) -> int:
    try:
        cfg = load_config(schema, config_file, argv)
        backend = resolve_cluster(cfg.cluster)
        try:
            check_backend(cfg.resources, backend)
        except ConfigError as err:
            if not cfg.dry_run:
                raise
            # A dry run shows the plan anyway (e.g. a cluster config read on a laptop).
            print(f"# note: a real launch here would stop: {err}")
        plan = planner(cfg, LaunchContext(backend, Path(config_file).resolve() if config_file else None))
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr, flush=True)
        return 2
    for note in plan.notes:
        say(f"{plan.name}: note: {note}")
    if cfg.dry_run:
        print(to_yaml(cfg), end="")
        print_plan(plan, element_states(plan, backend), prefix="#")
        return 0
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(plan.run_dir / "config.yaml", to_yaml(cfg))
    say(f"{plan.name}: {backend} backend; run directory {plan.run_dir}")
    return run_plan(plan, backend, cfg.wait or backend == "local")


def element_name(*parts: Any) -> str:
    """An element key from its parts: ``evaluate/model/task/seed-42``."""
    return "/".join(re.sub(r"\s+", "_", str(p)) for p in parts)
