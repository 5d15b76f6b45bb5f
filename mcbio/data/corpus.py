"""Read documents from JSONL files, plain-text folders and E3C JSON documents."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from mcbio.errors import UserError
from mcbio.jsonl import iter_jsonl

SAMPLE_CORPUS = Path(__file__).resolve().parents[1] / "resources" / "sample_corpus"
TEXT_KEYS = ("text", "content", "abstract")


@dataclass
class Document:
    id: str
    text: str
    source: str = ""
    metadata: dict = field(default_factory=dict)


class CorpusError(UserError):
    """A corpus file is unreadable; the message names the file and line."""


# --------------------------------------------------------------------------- encoding

# Bytes decoded at once by :func:`find_invalid_utf8`: whole blocks decode at C speed, so a
# launch can scan a corpus in about the time it takes to read it.
SCAN_BLOCK = 8 << 20
CORPUS_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".txt")


@dataclass(frozen=True)
class InvalidUtf8:
    """Where a file stops being UTF-8: 1-based ``line``, 0-based byte ``offset`` (in the
    decompressed stream for ``.gz``), and the offending ``byte``."""

    path: Path
    line: int
    offset: int
    byte: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: invalid UTF-8 (byte 0x{self.byte:02x} at byte offset {self.offset})"


def find_invalid_utf8(path: str | Path) -> InvalidUtf8 | None:
    """The first byte of ``path`` that is not valid UTF-8, or None; ``.gz`` files are scanned decompressed."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as handle:
        return first_invalid_in(path, iter(lambda: handle.read(SCAN_BLOCK), b""))


def first_invalid_in(path: Path, blocks: Iterable[bytes]) -> InvalidUtf8 | None:
    """The first byte of the stream ``blocks`` (the contents of ``path``) that is not UTF-8, or None."""
    start, lines, carry = 0, 1, b""  # ``carry``: a character cut by the block end, completed by the next block
    for block in blocks:
        data = carry + block
        try:
            data.decode("utf-8")
            good, carry = len(data), b""
        except UnicodeDecodeError as err:
            if err.reason != "unexpected end of data":
                return _located(path, data, err.start, start, lines)
            good, carry = err.start, data[err.start:]
        lines += data.count(b"\n", 0, good)
        start += good
    if carry:  # the file ends inside a character
        return _located(path, carry, 0, start, lines)
    return None


def _located(path: Path, data: bytes, at: int, start: int, lines: int) -> InvalidUtf8:
    return InvalidUtf8(path, lines + data.count(b"\n", 0, at), start + at, data[at])


def corpus_files(root: Path) -> list[Path]:
    """The files :func:`iter_documents` reads under ``root`` (``root`` itself when a file), in its order."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return [p for p in files if p.name.endswith(CORPUS_SUFFIXES)]


def first_invalid_utf8(root: str | Path) -> InvalidUtf8 | None:
    """The first byte that is not UTF-8 in the corpus ``root`` (a file or folder), or None: a launch check."""
    return next(filter(None, map(find_invalid_utf8, corpus_files(Path(root)))), None)


def _undecodable(path: Path) -> CorpusError:
    """The error for a file that raised UnicodeDecodeError: the text decoder does not say where, the scan does."""
    found = find_invalid_utf8(path)
    return CorpusError(str(found) if found else f"{path}: invalid UTF-8")


# --------------------------------------------------------------------------- documents


def _iter_jsonl(path: Path) -> Iterator[Document]:
    try:
        yield from _iter_jsonl_rows(path)
    except UnicodeDecodeError:
        raise _undecodable(path) from None


def _iter_jsonl_rows(path: Path) -> Iterator[Document]:
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
        row = json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise CorpusError(f"{path}: invalid JSON ({err.msg})") from None
    text = next((row[k] for k in TEXT_KEYS if isinstance(row.get(k), str)), None) if isinstance(row, dict) else None
    if text is None:
        raise CorpusError(f"{path}: no text field (expected one of {', '.join(TEXT_KEYS)})")
    yield Document(path.stem, text, path.parent.name, {k: v for k, v in row.items() if k != "text"})


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _undecodable(path) from None


def iter_documents(corpus: str | Path | None = None, max_documents: int | None = None) -> Iterator[Document]:
    """Documents of a JSONL file (``.jsonl`` or ``.jsonl.gz``), a ``.txt`` file, or a folder of those and of ``.json`` documents.

    ``None`` reads the sample corpus shipped with the package. Files are read in sorted
    path order so that the same corpus always yields the same document order.
    """
    root = Path(corpus) if corpus else SAMPLE_CORPUS
    if not root.exists():
        raise CorpusError(f"corpus not found: {root}")
    count = 0
    for path in corpus_files(root):
        if path.suffix == ".txt":
            docs: Iterator[Document] = iter([Document(path.stem, _read_text(path), path.parent.name)])
        elif path.name.endswith((".jsonl", ".jsonl.gz")):
            docs = _iter_jsonl(path)
        else:
            docs = _iter_json_document(path)
        for doc in docs:
            if not doc.text.strip():
                continue
            yield doc
            count += 1
            if max_documents is not None and count >= max_documents:
                return
    if count == 0:
        raise CorpusError(f"no documents found under {root} (reads .jsonl, .jsonl.gz, .json and .txt files)")
