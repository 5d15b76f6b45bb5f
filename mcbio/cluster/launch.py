"""Config -> submitit job(s). The whole body of every ``launch.py``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Sequence, TypeVar

import submitit

from mcbio.cluster.executor import make_executor, resolve_cluster
from mcbio.cluster.job import Entry, Job
from mcbio.config.loader import ConfigError, load_config, to_yaml
from mcbio.config.schema import RunConfig

T = TypeVar("T", bound=RunConfig)


def resolve_out_dir(cfg: RunConfig) -> Path:
    """``out_dir`` or ``<paths.runs_root>/<name>[-<preset>]``, made absolute so jobs agree."""
    if cfg.out_dir:
        out = Path(cfg.out_dir)
    else:
        suffix = f"-{cfg.preset}" if cfg.preset else ""
        out = Path(cfg.paths.runs_root) / f"{cfg.name}{suffix}"
    out = out.expanduser().resolve()
    cfg.out_dir = str(out)
    return out


def submit(entry: Entry, cfg: T) -> submitit.Job:
    out = resolve_out_dir(cfg)
    executor = make_executor(cfg.cluster, cfg.resources, out / "submitit", cfg.name)
    return executor.submit(Job(entry, cfg))


def submit_array(
    entry: Entry, cfgs: Sequence[T], folder: str | Path, name: str | None = None
) -> list[submitit.Job]:
    """One array (Slurm) or batch (local) of jobs; cluster and resources come from ``cfgs[0]``."""
    if not cfgs:
        return []
    for cfg in cfgs:
        resolve_out_dir(cfg)
    first = cfgs[0]
    executor = make_executor(first.cluster, first.resources, Path(folder), name or first.name)
    slots = None
    if resolve_cluster(first.cluster) == "local":
        slots = (str(Path(folder).resolve() / "slots"), max(1, first.resources.array_parallelism))
    with executor.batch():
        jobs = [executor.submit(Job(entry, cfg, slots)) for cfg in cfgs]
    return jobs


def follow(job: submitit.Job, poll_s: float = 1.0) -> Any:
    """Echo the job's log while it runs (local runs feel like a normal script), then return its result."""
    offsets = {"out": 0, "err": 0}
    while True:
        done = job.done()
        for key, path in (("out", job.paths.stdout), ("err", job.paths.stderr)):
            try:
                with open(path, "rb") as handle:
                    handle.seek(offsets[key])
                    chunk = handle.read()
            except FileNotFoundError:
                continue
            offsets[key] += len(chunk)
            stream = sys.stdout if key == "out" else sys.stderr
            stream.write(chunk.decode("utf-8", errors="replace"))
            stream.flush()
        if done:
            # One result per task (one task per GPU); rank 0's stands for the run.
            return job.results()[0] if job.num_tasks > 1 else job.result()
        time.sleep(poll_s)


def launch(
    schema: type[T],
    entry: Entry,
    config_file: str | Path | None,
    argv: Sequence[str] | None = None,
) -> int:
    """Load the experiment's config with command-line overrides, then run or submit it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg = load_config(schema, config_file, argv)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    if cfg.dry_run:
        print(to_yaml(cfg), end="")
        return 0
    backend = resolve_cluster(cfg.cluster)
    job = submit(entry, cfg)
    print(f"[mcbio] {cfg.name}: job {job.job_id} on {backend}; run directory {cfg.out_dir}", flush=True)
    print(f"[mcbio] logs: {job.paths.stdout}", flush=True)
    if backend == "local" or cfg.wait:
        try:
            result = follow(job)
        except submitit.core.utils.FailedJobError as err:
            print(f"[mcbio] job {job.job_id} failed:\n{err}", file=sys.stderr)
            return 1
        print(f"[mcbio] done: {result}")
    return 0
