"""datatrove readers for the curation inputs: JSONL, plain-text folders, E3C JSON documents.

Each reader tags its documents with ``mcbio_source``, ``mix_group`` and ``curate`` so that
one pipeline can chain several sources (datatrove readers forward the documents of the
readers before them, and each shards its own files across tasks).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.readers.base import BaseDiskReader

from mcbio.config.curation import SourceConfig


class E3CJsonReader(BaseDiskReader):
    """One JSON object per file with a ``text`` key (E3C layer 3 and similar dumps)."""

    name = "🧬 E3C json"

    def read_file(self, filepath: str):
        with self.data_folder.open(filepath, "r", encoding="utf-8") as handle:
            raw = handle.read()
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as err:
            raise ValueError(f"{filepath}: invalid JSON ({err.msg} at line {err.lineno})") from None
        if not isinstance(data, dict) or not isinstance(data.get(self.text_key), str):
            raise ValueError(f"{filepath}: expected a JSON object with a '{self.text_key}' string")
        data.setdefault(self.id_key, Path(filepath).stem)
        # E3C's own 'source' (the journal) must not shadow the pipeline's tags.
        if "source" in data:
            data["origin"] = data.pop("source")
        document = self.get_document_from_dict(data, filepath, 0)
        if document:
            yield document


class TextFolderReader(BaseDiskReader):
    """One document per plain-text file; its id is the file's path under the folder."""

    name = "🧬 text folder"

    def read_file(self, filepath: str):
        with self.data_folder.open(filepath, "r", encoding="utf-8") as handle:
            text = handle.read()
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
    kwargs = dict(limit=src.limit, default_metadata=meta, glob_pattern=pattern)
    if fmt == "jsonl":
        compression = "gzip" if pattern.endswith(".gz") else "infer"
        return JsonlReader(folder, compression=compression, **kwargs)
    if fmt == "e3c_json":
        return E3CJsonReader(folder, **kwargs)
    if fmt == "text":
        return TextFolderReader(folder, **kwargs)
    raise ValueError(f"sources.{name}.format: unknown format {fmt!r}")


def build_readers(sources: Dict[str, SourceConfig]) -> List:
    return [build_reader(name, src) for name, src in sources.items()]
