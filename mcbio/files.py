"""Atomic file writes: readers (and concurrent jobs) see the old file or the new one, never half.

The temporary file is unique (``mkstemp`` in the target's folder, so the final rename
stays on one filesystem); two writers of the same path never share it. The file gets the
process's normal permissions (0666 less the umask), like a plain ``open``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Iterable, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Write to a temporary file that replaces ``path`` when the block succeeds; removed otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file 0600 whatever the umask; a rename keeps that mode, which
        # would hide every table from the project's group. Give it what open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """A unique temporary folder beside ``path`` that becomes ``path`` when the block succeeds.

    Whoever finishes first wins: if ``path`` appeared meanwhile (another writer), the new
    folder is discarded; on failure it is removed. Readers never see a half-written folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        try:
            os.rename(tmp, path)
        except OSError:  # path exists (a concurrent writer finished first)
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_open(path) as handle:
        handle.write(text)
    return Path(path)


def write_json_atomic(path: str | Path, data: Any, indent: int | None = 2) -> Path:
    with atomic_open(path) as handle:
        json.dump(data, handle, indent=indent, ensure_ascii=False, default=str)
    return Path(path)


def write_jsonl_atomic(path: str | Path, rows: Iterable[Any]) -> int:
    count = 0
    with atomic_open(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def read_json_object(path: str | Path) -> dict | None:
    """The JSON object in ``path``; None when the file is missing, not JSON, or not an object (a marker not yet written)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def json_marker_matches(path: str | Path, **expected: Any) -> bool:
    """``path`` is a JSON object whose fields hold ``expected`` (a done marker written last by a job)."""
    data = read_json_object(path)
    return data is not None and all(data.get(k) == v for k, v in expected.items())


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (checkpoints are large)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
