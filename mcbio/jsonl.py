"""JSON Lines reading with errors that name the file and line."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

# Called with (line number, its text) when the last line of a file has no newline and is not JSON.
OnTornTail = Callable[[int, str], None]


def iter_jsonl(path: str | Path, error: type[ValueError] = ValueError,
               on_torn_tail: Optional[OnTornTail] = None) -> Iterator[tuple[int, Any]]:
    """``(line number, object)`` for each non-blank line; invalid JSON raises ``error`` naming file and line.

    ``.gz`` files (datatrove's JsonlWriter output) are read compressed. A last line with no
    newline that is not JSON is torn (a writer killed mid-line, or one still writing): with
    ``on_torn_tail`` it is handed there and the reading ends, without it it is an error too.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    # Bytes, decoded line by line: a torn tail may end inside a character.
    with opener(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            # Only the last line can lack its newline: the file is split at each one.
            torn = on_torn_tail is not None and not raw.endswith(b"\n")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                if torn:
                    on_torn_tail(line_no, raw.decode("utf-8", errors="replace"))
                    return
                raise  # callers locate it (mcbio.data.corpus scans for the byte)
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as err:
                if torn:
                    on_torn_tail(line_no, line)
                    return
                raise error(f"{path}:{line_no}: invalid JSON ({err.msg})") from None


def torn_tail_offset(path: str | Path) -> Optional[int]:
    """Where the torn last line of a plain JSONL file starts (see :func:`iter_jsonl`); None if it has none.

    Only the end of the file is read (backwards to its last newline): this runs before every read
    of a results store. A tail cut inside a multi-byte character is torn too.
    """
    with open(path, "rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        if end == 0:
            return None
        handle.seek(end - 1)
        if handle.read(1) == b"\n":
            return None
        start, tail = _last_line(handle, end)
    if not tail.strip():
        return None
    try:
        json.loads(tail.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return start
    return None


def _last_line(handle, end: int, chunk: int = 1 << 16) -> tuple[int, bytes]:
    """(offset, bytes) of the line after the last newline of an open binary file of ``end`` bytes."""
    pos, tail = end, b""
    while pos > 0:
        step = min(chunk, pos)
        pos -= step
        handle.seek(pos)
        tail = handle.read(step) + tail
        newline = tail.rfind(b"\n")
        if newline >= 0:
            return pos + newline + 1, tail[newline + 1:]
    return 0, tail
