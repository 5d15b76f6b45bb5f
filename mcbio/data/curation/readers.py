"""datatrove readers for the curation inputs: JSONL, plain-text folders, E3C JSON documents.

Each reader tags its documents with ``mcbio_source``, ``mix_group`` and ``curate`` so that
one pipeline can chain several sources (datatrove readers forward the documents of the
readers before them, and each shards its own files across tasks).

A document that cannot be read (invalid UTF-8, invalid JSON) never ends a file quietly, as
datatrove's own JsonlReader does (it logs a warning and stops reading the file at the first
undecodable byte): with ``on_bad_document: fail`` the rank fails with one line naming the
file and line; with ``skip`` that document alone is dropped and counted
(``dropped/invalid_utf8``, ``dropped/invalid_json``, ``dropped/no_text``) in the stage statistics
the launcher prints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.readers.base import BaseDiskReader
from datatrove.utils.logging import logger

from mcbio.config.curation import SourceConfig
from mcbio.data.corpus import InvalidUtf8, find_invalid_utf8, first_invalid_in
from mcbio.errors import UserError


class BadDocument(UserError):
    """A source document that cannot be read (``on_bad_document: fail``); the message names file and line."""


class StrictReading:
    """What a reader does with a document it cannot read: raise, or drop it with a counted reason."""

    def __init__(self, *args, on_bad_document: str = "fail", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.on_bad_document = on_bad_document

    def bad_document(self, reason: str, message: str) -> None:
        if self.on_bad_document == "fail":
            source = (self.default_metadata or {}).get("mcbio_source", "<name>")
            raise BadDocument(f"{message} (sources.{source}.on_bad_document=skip drops such documents, counted)")
        logger.warning(f"skipped (on_bad_document=skip): {message}")
        self.stat_update(f"dropped/{reason}")

    def decoded(self, filepath: str, raw: bytes) -> str | None:
        """The whole file ``raw`` as UTF-8, or None (after :meth:`bad_document`) when it is not."""
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            found = first_invalid_in(Path(self.data_folder.resolve_paths(filepath)), [raw])
            self.bad_document("invalid_utf8", str(found))
            return None


class StrictJsonlReader(StrictReading, JsonlReader):
    """datatrove's JsonlReader, line by line in bytes, so that a bad line is named (or skipped) alone.

    Document ids and metadata are JsonlReader's (``<path>/<0-based line>`` without an id key).
    """

    name = "🧬 jsonl"

    def read_file(self, filepath: str):
        with self.data_folder.open(filepath, "rb", compression=self.compression) as handle:
            for li, raw in enumerate(handle):
                with self.track_time():
                    document = self._document(filepath, li, raw)
                if document:
                    yield document

    def _document(self, filepath: str, li: int, raw: bytes):
        import orjson

        where = f"{self.data_folder.resolve_paths(filepath)}:{li + 1}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            return self.bad_document("invalid_utf8", f"{where}: invalid UTF-8 (byte 0x{raw[err.start]:02x} at "
                                                     f"byte {err.start} of the line)")
        if not text.strip():
            return None  # a blank line holds no document
        try:
            row = orjson.loads(text)
        except orjson.JSONDecodeError as err:
            return self.bad_document("invalid_json", f"{where}: invalid JSON ({err})")
        if not isinstance(row, dict):
            return self.bad_document("invalid_json", f"{where}: not a JSON object")
        document = self.get_document_from_dict(row, filepath, li)
        if document is None:
            self.stat_update("dropped/no_text")
        return document


def read_bytes(reader: BaseDiskReader, filepath: str) -> bytes:
    with reader.data_folder.open(filepath, "rb") as handle:
        return handle.read()


class E3CJsonReader(StrictReading, BaseDiskReader):
    """One JSON object per file with a ``text`` key (E3C layer 3 and similar dumps)."""

    name = "🧬 E3C json"

    def read_file(self, filepath: str):
        raw = self.decoded(filepath, read_bytes(self, filepath))
        if raw is None:
            return
        where = self.data_folder.resolve_paths(filepath)
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as err:
            self.bad_document("invalid_json", f"{where}:{err.lineno}: invalid JSON ({err.msg})")
            return
        if not isinstance(data, dict) or not isinstance(data.get(self.text_key), str):
            self.bad_document("no_text", f"{where}: expected a JSON object with a '{self.text_key}' string")
            return
        data.setdefault(self.id_key, Path(filepath).stem)
        # E3C's own 'source' (the journal) must not shadow the pipeline's tags.
        if "source" in data:
            data["origin"] = data.pop("source")
        document = self.get_document_from_dict(data, filepath, 0)
        if document:
            yield document


class TextFolderReader(StrictReading, BaseDiskReader):
    """One document per plain-text file; its id is the file's path under the folder."""

    name = "🧬 text folder"

    def read_file(self, filepath: str):
        text = self.decoded(filepath, read_bytes(self, filepath))
        if text is None:
            return
        document = self.get_document_from_dict({"text": text, "id": str(Path(filepath).with_suffix(""))}, filepath, 0)
        if document:
            yield document


DEFAULT_GLOBS = {"jsonl": "**/*.jsonl*", "text": "**/*.txt", "e3c_json": "**/*.json"}


def detect_format(path: Path) -> str:
    if path.is_file():
        name = path.name
        if ".jsonl" in name:
            return "jsonl"
        if name.endswith(".json"):
            return "e3c_json"
        return "text"
    for fmt, suffix in (("jsonl", ".jsonl"), ("e3c_json", ".json"), ("text", ".txt")):
        if next(path.rglob(f"*{suffix}*"), None) is not None:
            return fmt
    raise ValueError(f"{path}: no .jsonl, .json or .txt files to read")


def build_reader(name: str, src: SourceConfig):
    path = Path(src.path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"sources.{name}.path: not found: {path}")
    fmt = detect_format(path) if src.format == "auto" else src.format
    meta = {"mcbio_source": name, "mix_group": src.group, "curate": src.curate}
    folder, pattern = (str(path.parent), path.name) if path.is_file() else (str(path), src.glob or DEFAULT_GLOBS[fmt])
    kwargs = dict(limit=src.limit, default_metadata=meta, glob_pattern=pattern, on_bad_document=src.on_bad_document)
    if fmt == "jsonl":
        compression = "gzip" if pattern.endswith(".gz") else "infer"
        return StrictJsonlReader(folder, compression=compression, **kwargs)
    if fmt == "e3c_json":
        return E3CJsonReader(folder, **kwargs)
    if fmt == "text":
        return TextFolderReader(folder, **kwargs)
    raise ValueError(f"sources.{name}.format: unknown format {fmt!r}")


def build_readers(sources: Dict[str, SourceConfig]) -> List:
    return [build_reader(name, src) for name, src in sources.items()]


def source_files(name: str, src: SourceConfig) -> List[Path]:
    """Every file the reader of source ``name`` reads (over all ranks), absolute."""
    reader = build_reader(name, src)
    folder = reader.data_folder
    return [Path(folder.resolve_paths(f)) for f in folder.list_files(recursive=reader.recursive,
                                                                      glob_pattern=reader.glob_pattern)]


def first_invalid_utf8(name: str, src: SourceConfig) -> InvalidUtf8 | None:
    """The first byte of the source that is not UTF-8 (a launch check), or None."""
    return next(filter(None, map(find_invalid_utf8, source_files(name, src))), None)
