"""Result records and the results store: one JSON object per evaluation, appended under a file lock."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from filelock import FileLock

from mcbio.jsonl import iter_jsonl
from mcbio.model.fingerprint import short


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
    ends: a launch preempted before that writes no row, and its time is not counted."""
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
        for line_no, row in iter_jsonl(file):
            try:
                rows.append(cls(**row))
            except TypeError as err:
                raise ValueError(f"{file}:{line_no}: not a {what} ({err})") from None
    return rows


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
    nothing twice.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.records_dir = self.root / "records"
        self.runs_dir = self.root / "runs"
        self.reference_dir = self.root / "reference"
        self.tables_dir = self.root / "tables"
        self.figures_dir = self.root / "figures"
        self._done_cache: tuple[tuple, set[tuple]] | None = None

    def _locked_append(self, file: Path, rows: list[dict], key_of) -> int:
        file.parent.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / ".lock")):
            seen = {key_of(row) for _, row in iter_jsonl(file)} if file.exists() else set()
            new = []
            for row in rows:
                k = key_of(row)
                if k not in seen:
                    seen.add(k)
                    new.append(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            if new:
                with open(file, "a", encoding="utf-8") as handle:
                    handle.write("".join(new))
                    handle.flush()
                    os.fsync(handle.fileno())
            return len(new)

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
        signature = tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files)
        # A plan asks once per element: the files are read again only when one of them changed.
        if self._done_cache is None or self._done_cache[0] != signature:
            keys = {(r.model, r.task, r.seed, r.config_hash, r.split, r.model_fingerprint)
                    for r in read_records(files) if r.extra.get("primary")}
            self._done_cache = (signature, keys)
        return self._done_cache[1]

    def records(self, experiment: str | None = None) -> list[ResultRecord]:
        if experiment is not None:
            path = self.records_dir / f"{experiment}.jsonl"
            return read_records(path) if path.exists() else []
        return read_records(self.records_dir) if self.records_dir.exists() else []

    def reference_records(self) -> list[ResultRecord]:
        return read_records(self.reference_dir) if self.reference_dir.exists() else []

    def runs(self) -> list[RunRecord]:
        return read_run_records(self.runs_dir) if self.runs_dir.exists() else []
