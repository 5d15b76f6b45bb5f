"""Result records and the results store: one JSON object per evaluation, appended under a file lock."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from filelock import FileLock

from mcbio.errors import UserError
from mcbio.jsonl import iter_jsonl, torn_tail_offset
from mcbio.model.fingerprint import short

log = logging.getLogger(__name__)


class StoreError(UserError):
    """A results-store file that cannot be read; the message is one line naming the file and line."""


@dataclass
class ResultRecord:
    """One metric of one fine-tuning run.

    ``model_fingerprint``: the content fingerprint of the weights and tokenizer that were
    fine-tuned (:mod:`mcbio.model.fingerprint`); None for records written before it
    existed ("no fingerprint": the weights behind them are not identified).
    """

    model: str
    task: str
    seed: int
    metric: str
    value: float
    config_hash: str
    commit: str
    split: str = "test"
    extra: dict[str, Any] = field(default_factory=dict)
    timestamp: float = field(default_factory=time.time)
    model_fingerprint: Optional[str] = None

    def key(self) -> tuple:
        return (self.model, self.task, self.seed, self.metric, self.config_hash, self.split, self.model_fingerprint)


def _row_key(row: dict) -> tuple:
    """:meth:`ResultRecord.key` of a stored row (rows written before fingerprints have none)."""
    return (row["model"], row["task"], row["seed"], row["metric"], row["config_hash"], row["split"],
            row.get("model_fingerprint"))


def git_commit(where: Path | None = None) -> str:
    """The commit of the code that runs: the package's own checkout, else the working directory's.

    ``-dirty`` is appended when tracked files differ from it; ``unknown`` outside a checkout
    (an installed package run from a folder that is not one).
    """
    for repo in ([where] if where else [Path(__file__).resolve().parent, Path.cwd()]):
        try:
            out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            continue
        if out.returncode != 0:
            continue
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    return "unknown"


def read_records(paths: str | Path | Iterable[str | Path]) -> list[ResultRecord]:
    """Records from JSONL files or folders of them; a malformed line is an error naming file and line."""
    return _read_rows(paths, ResultRecord, "result record")


def unique_records(records: Iterable[ResultRecord]) -> list[ResultRecord]:
    """One record per :meth:`ResultRecord.key` (the latest wins), in key order."""
    latest: dict[tuple, ResultRecord] = {}
    for rec in sorted(records, key=lambda r: r.timestamp):
        latest[rec.key()] = rec
    return [latest[k] for k in sorted(latest, key=lambda k: tuple(map(str, k)))]


def one_fingerprint_per_model(records: Iterable[ResultRecord],
                              keep: Mapping[str, str] | None = None) -> list[ResultRecord]:
    """``records`` unchanged when each model name has one fingerprint (None, "no fingerprint", is one).

    A model with records of two or more fingerprints is two models under one name: a
    ValueError names it, each fingerprint and the runs (``extra["run"]``) that wrote its
    records, unless ``keep`` (model -> fingerprint prefix, ``none`` for records without
    one) says which to keep; the model's other records are then left out.
    """
    records = list(records)
    runs: dict[str, dict[str | None, set[str]]] = {}
    for r in records:
        runs.setdefault(r.model, {}).setdefault(r.model_fingerprint, set()).add(str(r.extra.get("run", "?")))
    dropped: set[tuple[str, str | None]] = set()
    for model, by_fp in sorted(runs.items()):
        prefix = (keep or {}).get(model)
        if prefix is None and len(by_fp) == 1:
            continue
        listed = "; ".join(f"{short(fp)} (runs: {', '.join(sorted(by_fp[fp]))})"
                           for fp in sorted(by_fp, key=lambda f: f or ""))
        if prefix is None:
            raise ValueError(f"model '{model}' has records of {len(by_fp)} different weights: {listed}. Keep one "
                             f"(keep_fingerprints.{model}=<prefix>, 'none' for the records without a fingerprint) "
                             f"or rename one of the models")
        chosen = [fp for fp in by_fp if short(fp).startswith(prefix) or (fp or "").startswith(prefix)]
        if len(chosen) != 1:
            raise ValueError(f"keep_fingerprints.{model}='{prefix}' matches {len(chosen)} of its fingerprints: "
                             f"{listed}")
        dropped |= {(model, fp) for fp in by_fp if fp != chosen[0]}
    return [r for r in records if (r.model, r.model_fingerprint) not in dropped]


@dataclass
class RunRecord:
    """One pretraining run's compute, the input of the carbon table."""

    model: str
    config_hash: str
    gpu_hours: float
    num_gpus: int
    wall_s: float
    gpu_type: str
    commit: str
    extra: dict[str, Any] = field(default_factory=dict)
    timestamp: float = field(default_factory=time.time)


def training_runs(runs: Iterable[RunRecord]) -> list[RunRecord]:
    """Each model's current training as one record: its latest launch that started from scratch
    (``resumed_at_batch`` 0) and every later launch that resumed it (a requeue after preemption, a
    relaunch that only exported again), their wall time, GPU- and CPU-hours summed. Launches of an
    earlier training of the same name are not its cost. A launch records itself when its element
    ends, with the time of every attempt since the previous record (mcbio.train.attempts): a killed
    or requeued attempt's time is counted by the launch that finishes the run."""
    by_model: dict[str, list[RunRecord]] = {}
    for run in sorted(runs, key=lambda r: r.timestamp):
        if not run.extra.get("resumed_at_batch"):
            by_model[run.model] = []
        by_model.setdefault(run.model, []).append(run)
    out = []
    for launches in by_model.values():
        last = launches[-1]
        cpu_h = sum(float(r.extra.get("cpu_hours", 0.0)) for r in launches)
        out.append(RunRecord(model=last.model, config_hash=last.config_hash,
                             gpu_hours=sum(r.gpu_hours for r in launches), num_gpus=last.num_gpus,
                             wall_s=sum(r.wall_s for r in launches), gpu_type=last.gpu_type, commit=last.commit,
                             extra={**last.extra, "cpu_hours": round(cpu_h, 4), "launches": len(launches)},
                             timestamp=last.timestamp))
    return out


def read_run_records(paths: str | Path | Iterable[str | Path]) -> list[RunRecord]:
    return _read_rows(paths, RunRecord, "run record")


def _read_rows(paths: str | Path | Iterable[str | Path], cls: type, what: str) -> list:
    if isinstance(paths, (str, Path)):
        paths = [paths]
    rows = []
    for file in _jsonl_files(paths):
        for line_no, row in iter_jsonl(file, StoreError, on_torn_tail=lambda n, _, file=file: _skip_torn(file, n)):
            try:
                rows.append(cls(**row))
            except TypeError as err:
                raise StoreError(f"{file}:{line_no}: not a {what} ({err})") from None
    return rows


def _skip_torn(file: Path, line_no: int) -> None:
    # A store sets torn lines aside before it reads (ResultStore._set_aside_torn_tail): one seen here
    # is in a file read outside a store, or being written right now by a job of another launch.
    log.warning("%s:%d: the last line is incomplete (a writer killed mid-line, or one still writing): not read",
                file, line_no)


def _jsonl_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.rglob("*.jsonl")))
        elif p.is_file():
            files.append(p)
    return files


class ResultStore:
    """The ``results/`` folder: evaluation records, run records, references, tables, figures.

    ``records/<experiment>.jsonl`` hold at most one record per key (model, task, seed,
    metric, config hash, split, model fingerprint): :meth:`add` takes an exclusive lock on
    ``.lock``, reads the keys already stored and appends only new ones in one write, so
    concurrent array jobs never lose or duplicate a record, and a re-launched grid adds
    nothing twice. A job killed mid-write leaves a torn last line: the next read or append
    moves it, under the same lock, into ``<file>.torn-<time>`` and warns; any other bad line
    is a :class:`StoreError` naming file and line.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.records_dir = self.root / "records"
        self.runs_dir = self.root / "runs"
        self.reference_dir = self.root / "reference"
        self.tables_dir = self.root / "tables"
        self.figures_dir = self.root / "figures"
        self._done_cache: tuple[tuple, set[tuple]] | None = None

    def _lock(self) -> FileLock:
        """The store's one lock: every append and every repair of a file holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / ".lock"))

    def _locked_append(self, file: Path, rows: list[dict], key_of) -> int:
        file.parent.mkdir(parents=True, exist_ok=True)
        with self._lock():
            seen = set()
            if file.exists():
                self._set_aside_torn_tail(file)
                seen = _stored_keys(file, key_of)
            new = []
            for row in rows:
                k = key_of(row)
                if k not in seen:
                    seen.add(k)
                    new.append(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            if new:
                # A complete last line without its newline (a hand edit) must not be glued to the first new one.
                lead = "\n" if _ends_mid_line(file) else ""
                size = file.stat().st_size if file.exists() else 0
                try:
                    with open(file, "a", encoding="utf-8") as handle:
                        handle.write(lead + "".join(new))
                        handle.flush()
                        os.fsync(handle.fileno())
                except OSError:
                    # A full disk (or quota) mid-write: take the partial line back out, so the store holds
                    # whole records only and the caller's error is the whole story.
                    with open(file, "r+b") as handle:
                        handle.truncate(size)
                    raise
            return len(new)

    def _set_aside_torn_tail(self, file: Path) -> Optional[Path]:
        """Move ``file``'s torn last line (a writer killed mid-line) into a side file beside it; the caller
        holds the lock. The store file keeps its complete lines; the torn bytes are kept, never deleted.

        Returns the side file (``<file>.torn-<time>``, which no ``*.jsonl`` listing picks up), or None.
        """
        offset = torn_tail_offset(file)
        if offset is None:
            return None
        with open(file, "rb") as handle:
            head = handle.read(offset)
            torn = handle.read()
        side = _new_side_file(file, torn)
        # The side file is on disk before the store file is cut: a kill in between loses nothing.
        with open(file, "r+b") as handle:
            handle.truncate(offset)
            handle.flush()
            os.fsync(handle.fileno())
        log.warning("%s:%d: torn last line (a writer killed mid-line?): its %d bytes moved to %s; the complete "
                    "records before it are used", file, head.count(b"\n") + 1, len(torn), side)
        return side

    def _repair(self, files: Iterable[Path]) -> list[Path]:
        """``files``, each torn last line set aside first (the tail is read unlocked, checked again locked)."""
        files = list(files)
        for file in files:
            if file.suffix != ".jsonl" or torn_tail_offset(file) is None:
                continue
            try:
                with self._lock():
                    self._set_aside_torn_tail(file)
            except OSError as err:  # a store that this user may read but not write
                log.warning("%s: its torn last line could not be set aside (%s): it is not read", file, err)
        return files

    def add(self, records: Iterable[ResultRecord], experiment: str) -> int:
        """Store records under ``records/<experiment>.jsonl``; return how many were new."""
        rows = [asdict(r) for r in records]
        return self._locked_append(self.records_dir / f"{experiment}.jsonl", rows, _row_key)

    def add_run(self, run: RunRecord, experiment: str) -> int:
        """One row per launch of a pretraining (a requeue or a relaunch adds its own time):
        :func:`training_runs` sums the launches of each model's current training."""
        return self._locked_append(self.runs_dir / f"{experiment}.jsonl", [asdict(run)],
                                   lambda row: (row["model"], row["config_hash"], row["timestamp"]))

    def done_keys(self) -> set[tuple]:
        """(model, task, seed, config_hash, split, model fingerprint) of every primary-metric record, in
        every records file.

        The done-key of an evaluation: whichever launcher or run wrote it, an element with
        the same key is not run again. A record without a fingerprint (written before
        fingerprints) has None there, so it is never the done-key of a fingerprinted model.
        """
        files = sorted(self.records_dir.glob("*.jsonl")) if self.records_dir.is_dir() else []
        # A plan asks once per element: the files are read again only when one of them changed (a file
        # unchanged since it was read had its torn line, if any, set aside then).
        if self._done_cache is not None and self._done_cache[0] == _signature(files):
            return self._done_cache[1]
        files = self._repair(files)
        signature = _signature(files)  # taken before reading: a record added meanwhile is read next time
        keys = {(r.model, r.task, r.seed, r.config_hash, r.split, r.model_fingerprint)
                for r in read_records(files) if r.extra.get("primary")}
        self._done_cache = (signature, keys)
        return keys

    def record_files(self, experiment: str | None = None) -> list[Path]:
        """``records/<experiment>.jsonl``, or every records file (sub-folders too) when ``experiment`` is None."""
        if experiment is not None:
            path = self.records_dir / f"{experiment}.jsonl"
            return [path] if path.exists() else []
        return _jsonl_files([self.records_dir])

    def records_by_file(self, experiment: str | None = None) -> dict[Path, list[ResultRecord]]:
        return {file: read_records(file) for file in self._repair(self.record_files(experiment))}

    def records(self, experiment: str | None = None) -> list[ResultRecord]:
        return [r for recs in self.records_by_file(experiment).values() for r in recs]

    def reference_records(self) -> list[ResultRecord]:
        return read_records(self._repair(_jsonl_files([self.reference_dir])))

    def runs(self) -> list[RunRecord]:
        return read_run_records(self._repair(_jsonl_files([self.runs_dir])))


def _signature(files: Iterable[Path]) -> tuple:
    return tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files)


def _stored_keys(file: Path, key_of) -> set[tuple]:
    keys = set()
    for line_no, row in iter_jsonl(file, StoreError):
        try:
            keys.add(key_of(row))
        except (KeyError, TypeError) as err:
            raise StoreError(f"{file}:{line_no}: not a stored record (no key {err})") from None
    return keys


def _ends_mid_line(file: Path) -> bool:
    """The file is not empty and its last byte is not a newline."""
    if not file.exists() or file.stat().st_size == 0:
        return False
    with open(file, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) != b"\n"


def _new_side_file(file: Path, data: bytes) -> Path:
    """``data`` in a new ``<file>.torn-<time>`` beside ``file`` (a number added when one of that name exists)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        side = file.with_name(f"{file.name}.torn-{stamp}" + (f"-{n}" if n else ""))
        try:
            with open(side, "xb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            return side
        except FileExistsError:
            continue
    raise StoreError(f"{file}: no free name for the side file of its torn last line ({side})")
