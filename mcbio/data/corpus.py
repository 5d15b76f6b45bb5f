"""Read documents from JSONL files, plain-text folders and E3C JSON documents."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from mcbio.jsonl import iter_jsonl

SAMPLE_CORPUS = Path(__file__).resolve().parents[1] / "resources" / "sample_corpus"
TEXT_KEYS = ("text", "content", "abstract")


@dataclass
class Document:
    id: str
    text: str
    source: str = ""
    metadata: dict = field(default_factory=dict)


class CorpusError(ValueError):
    """A corpus file is unreadable; the message names the file and line."""


def _iter_jsonl(path: Path) -> Iterator[Document]:
    for line_no, row in iter_jsonl(path, CorpusError):
        text = next((row[k] for k in TEXT_KEYS if isinstance(row.get(k), str)), None) if isinstance(row, dict) else None
        if text is None:
            raise CorpusError(f"{path}:{line_no}: no text field (expected one of {', '.join(TEXT_KEYS)})")
        doc_id = str(row.get("id", f"{path.stem}:{line_no}"))
        meta = {k: v for k, v in row.items() if k not in ("id", "text", "source")}
        yield Document(doc_id, text, str(row.get("source", path.stem)), meta)


def _iter_json_document(path: Path) -> Iterator[Document]:
    """One JSON object per file (E3C layer 3: ``text`` plus metadata)."""
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CorpusError(f"{path}: invalid JSON ({err.msg})") from None
    text = next((row[k] for k in TEXT_KEYS if isinstance(row.get(k), str)), None) if isinstance(row, dict) else None
    if text is None:
        raise CorpusError(f"{path}: no text field (expected one of {', '.join(TEXT_KEYS)})")
    yield Document(path.stem, text, path.parent.name, {k: v for k, v in row.items() if k != "text"})


def iter_documents(corpus: str | Path | None = None, max_documents: int | None = None) -> Iterator[Document]:
    """Documents of a JSONL file (``.jsonl`` or ``.jsonl.gz``), a ``.txt`` file, or a folder of those and of ``.json`` documents.

    ``None`` reads the sample corpus shipped with the package. Files are read in sorted
    path order so that the same corpus always yields the same document order.
    """
    root = Path(corpus) if corpus else SAMPLE_CORPUS
    if not root.exists():
        raise CorpusError(f"corpus not found: {root}")
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    count = 0
    for path in files:
        if path.suffix == ".txt":
            docs: Iterator[Document] = iter([Document(path.stem, path.read_text(encoding="utf-8"), path.parent.name)])
        elif path.name.endswith((".jsonl", ".jsonl.gz")):
            docs = _iter_jsonl(path)
        elif path.suffix == ".json":
            docs = _iter_json_document(path)
        else:
            continue
        for doc in docs:
            if not doc.text.strip():
                continue
            yield doc
            count += 1
            if max_documents is not None and count >= max_documents:
                return
    if count == 0:
        raise CorpusError(f"no documents found under {root} (reads .jsonl, .jsonl.gz, .json and .txt files)")
