"""JSON Lines reading with errors that name the file and line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Iterator


def iter_jsonl(path: str | Path, error: type[ValueError] = ValueError) -> Iterator[tuple[int, Any]]:
    """``(line number, object)`` for each non-blank line; invalid JSON raises ``error`` naming file and line.

    ``.gz`` files (datatrove's JsonlWriter output) are read compressed.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as err:
                raise error(f"{path}:{line_no}: invalid JSON ({err.msg})") from None
