"""One JSON object per evaluation, appended under a file lock so concurrent jobs never interleave."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from mcbio.config.loader import REPO_ROOT


@dataclass
class ResultRecord:
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

    def key(self) -> tuple:
        return (self.model, self.task, self.seed, self.metric, self.config_hash, self.split)


def git_commit(repo: Path = REPO_ROOT) -> str:
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip() if out.returncode == 0 else "unknown"
    if commit != "unknown":
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
        if dirty.stdout.strip():
            commit += "-dirty"
    return commit


def append_records(path: str | Path, records: Iterable[ResultRecord]) -> int:
    """Append records as JSON lines; an exclusive lock makes each batch one atomic write."""
    lines = "".join(json.dumps(asdict(r), ensure_ascii=False, sort_keys=True) + "\n" for r in records)
    if not lines:
        return 0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    return lines.count("\n")


def read_records(paths: str | Path | Iterable[str | Path]) -> list[ResultRecord]:
    """Records from JSONL files or folders of them; a malformed line is an error naming file and line."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(p.rglob("*.jsonl")) if p.is_dir() else [p])
    records = []
    for file in files:
        with open(file, encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    records.append(ResultRecord(**json.loads(line)))
                except (json.JSONDecodeError, TypeError) as err:
                    raise ValueError(f"{file}:{line_no}: not a result record ({err})") from None
    return records
