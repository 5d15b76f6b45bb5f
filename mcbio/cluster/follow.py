"""Following submitted elements: a line as each finishes, the running count, a failure's own message."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import submitit

from mcbio.cluster.job import AlreadyRunning
from mcbio.cluster.plan import Element
from mcbio.cluster.registry import is_running

PREFIX = "[mcbio]"
# Lines of a failed element's error shown in the launcher's output.
ERROR_TAIL_LINES = 12


def say(message: str, err: bool = False) -> None:
    print(f"{PREFIX} {message}", file=sys.stderr if err else sys.stdout, flush=True)


def failure_text(job: submitit.Job) -> str:
    """The exception (type and message) a failed job raised, else the tail of its error log."""
    try:
        job.result()
        return ""
    except Exception as err:  # submitit's FailedJobError / UncompletedJobError
        text = str(err)
    trace = text.split("----------------------")
    lines = trace[1].strip("\n").splitlines() if len(trace) >= 3 else []
    frames = [i for i, line in enumerate(lines) if line.startswith("  File ")]
    if frames:
        rest = lines[frames[-1] + 1:]
        while rest and (rest[0].startswith("    ") or not rest[0].strip()):
            rest = rest[1:]
        if rest:
            return "\n".join(rest[-ERROR_TAIL_LINES:])
    tail = _log_tail(Path(job.paths.stderr))
    return tail or text.strip().splitlines()[0]


def _log_tail(path: Path) -> str:
    try:
        lines = [l for l in path.read_text(encoding="utf-8", errors="replace").splitlines() if l.strip()]
    except OSError:
        return ""
    # submitit's own bookkeeping lines say nothing about the cause.
    lines = [l for l in lines if "submitit" not in l or "Error" in l]
    return "\n".join(lines[-ERROR_TAIL_LINES:])


@dataclasses.dataclass
class Progress:
    total: int
    done: int = 0
    failed: int = 0
    running: int = 0

    def line(self) -> str:
        return f"{self.done}/{self.total} done, {self.running} running, {self.failed} failed"


def _result_of(job: submitit.Job) -> Any:
    return job.results()[0] if job.num_tasks > 1 else job.result()


class _LogEcho:
    """Streams one job's stdout/stderr to the console (a lone local element shows its progress bar)."""

    def __init__(self, job: submitit.Job) -> None:
        self.job = job
        self.offsets = {"out": 0, "err": 0}

    def pump(self) -> None:
        for key, path in (("out", self.job.paths.stdout), ("err", self.job.paths.stderr)):
            try:
                with open(path, "rb") as handle:
                    handle.seek(self.offsets[key])
                    chunk = handle.read()
            except FileNotFoundError:
                continue
            self.offsets[key] += len(chunk)
            stream = sys.stdout if key == "out" else sys.stderr
            stream.write(chunk.decode("utf-8", errors="replace"))
            stream.flush()


def follow(submitted: list[tuple[Element, submitit.Job]], progress: Progress, echo: bool,
           poll_s: float = 1.0, waiting: Sequence[Element] = (),
           start: Optional[Callable[[list[Element]], list[tuple[Element, submitit.Job]]]] = None,
           limit: int = 0) -> list[tuple[Element, submitit.Job]]:
    """Print a line per element as it finishes (completion order); return the failed ones.

    ``echo``: stream the job's own output when it is the only one in flight. ``waiting``: elements
    to start with ``start`` (local runs), at most ``limit`` in flight: a local stage of hundreds of
    elements does not hold hundreds of processes. An element that an earlier stage made done
    (a finished run re-exported as it was) is counted done, not started.
    """
    remaining = list(submitted)
    queue = list(waiting)
    began = {job.job_id: time.time() for _, job in remaining}
    failed: list[tuple[Element, submitit.Job]] = []
    echoes: dict[str, _LogEcho] = {}
    # Elements whose job stepped aside for another launch's job: (element, job, lock).
    elsewhere: list[tuple[Element, submitit.Job, str]] = []
    progress.running += len(remaining)
    while remaining or queue or elsewhere:
        for item in [i for i in elsewhere if not is_running(Path(i[2]))]:
            elsewhere.remove(item)
            element, job, _ = item
            progress.running -= 1
            if element.done():
                progress.done += 1
                say(f"done {element.key}: by the other launch [{progress.line()}]")
            else:
                progress.failed += 1
                failed.append((element, job))
                say(f"FAILED {element.key}: it ran in another launch and is not done [{progress.line()}]", err=True)
        if queue and start is not None and len(remaining) < limit:
            batch, queue = queue[:limit - len(remaining)], queue[limit - len(remaining):]
            fresh = []
            for element in batch:
                if element.done():
                    progress.done += 1
                    say(f"done {element.key}: found done before it started [{progress.line()}]")
                else:
                    fresh.append(element)
            jobs = start(fresh) if fresh else []
            began.update({job.job_id: time.time() for _, job in jobs})
            remaining += jobs
            progress.running += len(jobs)
            continue
        if echo and len(remaining) == 1 and not queue:
            echoes.setdefault(remaining[0][1].job_id, _LogEcho(remaining[0][1])).pump()
        still = []
        for element, job in remaining:
            if not job.done():
                still.append((element, job))
                continue
            if job.job_id in echoes:
                echoes[job.job_id].pump()
            progress.running -= 1
            elapsed = time.time() - began[job.job_id]
            try:
                result = _result_of(job)
            except Exception:
                progress.failed += 1
                failed.append((element, job))
                reason = failure_text(job)
                say(f"FAILED {element.key} (job {job.job_id}, after {elapsed:.0f} s) [{progress.line()}]\n"
                    + "\n".join(f"    {l}" for l in reason.splitlines())
                    + f"\n    log: {job.paths.stderr}", err=True)
                continue
            if isinstance(result, AlreadyRunning):
                say(f"{element.key}: another launch's job {result.owner} is running it; not run twice, "
                    "waiting for it to end")
                elsewhere.append((element, job, result.lock))
                progress.running += 1  # still running, in the other launch
                continue
            progress.done += 1
            described = element.describe(result) if element.describe else ""
            say(f"done {element.key}{': ' + described if described else ''} ({elapsed:.0f} s) [{progress.line()}]")
        remaining = still
        if (remaining or elsewhere) and not (queue and len(remaining) < limit):
            time.sleep(poll_s)
    return failed


