"""Readers for evaluation data formats: CoNLL/IOB, BRAT, TSV/CSV/JSONL, HF datasets on disk.

NER readers return ``[(tokens, iob2_tags), ...]``; classification readers return
``[(text, [label, ...]), ...]`` (one label for single-label tasks).

BRAT -> IOB2 policy (QUAERO has nested, overlapping and discontinuous entities; IOB2
has one tag per token, so something must go):

* Tokens are whitespace-separated (QUAERO is pre-tokenised), further cut at every entity
  boundary that falls inside a token, so entity offsets always align with tokens.
* Entities are placed longest first (characters covered; ties: earlier start). An entity
  whose tokens are already taken by a placed entity is dropped: nested entities keep the
  outermost span, crossing ones keep the longer.
* Discontinuous entities (``start end;start end``), ``discontinuous=``:
  ``fragments`` (default): placed whole or not at all, each fragment tagged ``B-X I-X ...``
  (so scoring sees one entity per fragment); ``span``: one entity from the first
  fragment's start to the last fragment's end; ``drop``: ignored.
* Segments: ``segment="line"`` cuts documents at newlines (QUAERO has one sentence per
  line), ``"document"`` keeps whole documents; either way segments longer than
  ``max_words`` are cut, preferably where no entity continues.
"""

from __future__ import annotations

import bisect
import csv
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from mcbio.jsonl import iter_jsonl

log = logging.getLogger(__name__)

NerSentence = tuple[list[str], list[str]]
LabelledText = tuple[str, list[str]]


# --------------------------------------------------------------------------- CoNLL


def read_conll(path: str | Path) -> list[NerSentence]:
    """``token<TAB or space>tag`` per line, blank line between sentences (IOB2 tags, last column)."""
    sentences, tokens, tags = [], [], []
    with open(path, encoding="utf-8") as handle:
        for line_no, raw in enumerate(handle, start=1):
            line = raw.rstrip("\n")
            if not line.strip():
                if tokens:
                    sentences.append((tokens, tags))
                    tokens, tags = [], []
                continue
            if line.startswith("-DOCSTART-"):
                continue
            parts = line.split("\t") if "\t" in line else line.split()
            if len(parts) < 2:
                raise ValueError(f"{path}:{line_no}: expected 'token<TAB>tag', got {line!r}")
            tag = parts[-1]
            if tag != "O" and not (tag[:2] in ("B-", "I-") and len(tag) > 2):
                raise ValueError(f"{path}:{line_no}: tag {tag!r} is not IOB2 (O, B-X, I-X)")
            tokens.append(parts[0])
            tags.append(tag)
    if tokens:
        sentences.append((tokens, tags))
    if not sentences:
        raise ValueError(f"{path}: no sentences")
    return sentences


# --------------------------------------------------------------------------- BRAT


@dataclass(frozen=True)
class BratEntity:
    id: str
    type: str
    fragments: tuple[tuple[int, int], ...]

    @property
    def length(self) -> int:
        return sum(end - start for start, end in self.fragments)


_ANN_SPAN = re.compile(r"^(\S+) (\d+ \d+(?:;\d+ \d+)*)$")


def ann_lines(path: str | Path, kind: str) -> Iterator[tuple[int, str, list[str]]]:
    """``(line number, line, tab-separated fields)`` of the ``.ann`` lines of one kind (``T``, ``#``, ...)."""
    with open(path, encoding="utf-8") as handle:
        for line_no, raw in enumerate(handle, start=1):
            if raw.startswith(kind):
                yield line_no, raw, raw.rstrip("\n").split("\t")


def parse_ann(path: str | Path) -> list[BratEntity]:
    """Text-bound annotations (``T`` lines); relations, notes, attributes are not entities."""
    entities = []
    for line_no, raw, parts in ann_lines(path, "T"):
        match = _ANN_SPAN.match(parts[1]) if len(parts) >= 2 else None
        if match is None:
            raise ValueError(f"{path}:{line_no}: malformed entity line {raw.rstrip()!r} (expected 'Tn<TAB>TYPE start end[;start end]<TAB>text')")
        fragments = tuple(tuple(map(int, frag.split())) for frag in match.group(2).split(";"))
        if any(end <= start for start, end in fragments):
            raise ValueError(f"{path}:{line_no}: empty or reversed span in {raw.rstrip()!r}")
        entities.append(BratEntity(parts[0], match.group(1), fragments))  # type: ignore[arg-type]
    return entities


def _tokenize(text: str, cuts: set[int]) -> list[tuple[int, int]]:
    """Whitespace tokens as character spans, also cut at ``cuts`` offsets inside a token."""
    spans = []
    for match in re.finditer(r"\S+", text):
        start = match.start()
        for cut in sorted(c for c in cuts if match.start() < c < match.end()):
            spans.append((start, cut))
            start = cut
        spans.append((start, match.end()))
    return spans


def brat_to_iob2(
    text: str,
    entities: Iterable[BratEntity],
    discontinuous: str = "fragments",
    entity_types: Iterable[str] | None = None,
    stats: dict[str, int] | None = None,
) -> tuple[list[tuple[int, int]], list[str]]:
    """Token spans and IOB2 tags of one document (policy in the module docstring)."""
    if discontinuous not in ("fragments", "span", "drop"):
        raise ValueError(f"discontinuous={discontinuous!r}: choose fragments, span or drop")
    keep_types = set(entity_types) if entity_types else None
    candidates = []
    for ent in entities:
        if keep_types is not None and ent.type not in keep_types:
            continue
        if len(ent.fragments) > 1:
            if discontinuous == "drop":
                _count(stats, "dropped_discontinuous")
                continue
            if discontinuous == "span":
                ent = BratEntity(ent.id, ent.type, ((ent.fragments[0][0], ent.fragments[-1][1]),))
        candidates.append(ent)
    cuts = {off for ent in candidates for frag in ent.fragments for off in frag}
    spans = _tokenize(text, cuts)
    starts = [s for s, _ in spans]
    tags = ["O"] * len(spans)
    taken = [False] * len(spans)
    for ent in sorted(candidates, key=lambda e: (-e.length, e.fragments[0][0], e.id)):
        runs = []
        for start, end in ent.fragments:
            run, i = [], bisect.bisect_left(starts, start)
            while i < len(spans) and spans[i][0] < end:
                run.append(i)
                i += 1
            if run:
                runs.append(run)
        if not runs:
            _count(stats, "dropped_empty")
            continue
        if any(taken[i] for run in runs for i in run):
            _count(stats, "dropped_overlap")
            continue
        for run in runs:
            for k, i in enumerate(run):
                tags[i] = ("B-" if k == 0 else "I-") + ent.type
                taken[i] = True
        _count(stats, "placed")
    return spans, tags


def _count(stats: dict[str, int] | None, key: str) -> None:
    if stats is not None:
        stats[key] = stats.get(key, 0) + 1


def split_segments(
    text: str, spans: list[tuple[int, int]], tags: list[str], segment: str = "line", max_words: int | None = 256
) -> list[tuple[list[int], list[str]]]:
    """Token indices and tags per segment; an ``I-`` opening a segment becomes ``B-``."""
    if segment not in ("line", "document"):
        raise ValueError(f"segment={segment!r}: choose line or document")
    groups: list[list[int]] = []
    current: list[int] = []
    previous_end = 0
    for i, (start, end) in enumerate(spans):
        if segment == "line" and current and "\n" in text[previous_end:start]:
            groups.append(current)
            current = []
        current.append(i)
        previous_end = end
    if current:
        groups.append(current)
    out = []
    for group in groups:
        for chunk in _cap_length(group, tags, max_words):
            chunk_tags = [tags[i] for i in chunk]
            if chunk_tags[0].startswith("I-"):
                chunk_tags[0] = "B-" + chunk_tags[0][2:]
            out.append((chunk, chunk_tags))
    return out


def _cap_length(group: list[int], tags: list[str], max_words: int | None) -> list[list[int]]:
    if not max_words or len(group) <= max_words:
        return [group]
    chunks, start = [], 0
    while len(group) - start > max_words:
        cut = start + max_words
        # Walk back to a token that does not continue an entity, if one is near.
        back = cut
        while back > start + max_words // 2 and tags[group[back]].startswith("I-"):
            back -= 1
        cut = back if not tags[group[back]].startswith("I-") else cut
        chunks.append(group[start:cut])
        start = cut
    chunks.append(group[start:])
    return chunks


def brat_text_files(folder: str | Path) -> list[Path]:
    """The ``NAME.txt`` files of a flat BRAT folder (each beside its ``NAME.ann``), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"BRAT folder not found: {folder}")
    texts = sorted(folder.glob("*.txt"))
    if not texts:
        raise ValueError(f"{folder}: no .txt files (a BRAT folder holds NAME.txt + NAME.ann pairs)")
    return texts


def read_brat(
    folder: str | Path,
    segment: str = "line",
    max_words: int | None = 256,
    discontinuous: str = "fragments",
    entity_types: Iterable[str] | None = None,
) -> list[NerSentence]:
    """Every ``*.txt`` with its ``*.ann`` in ``folder`` -> IOB2 segments (sorted by file name)."""
    texts = brat_text_files(folder)
    stats: dict[str, int] = {}
    sentences: list[NerSentence] = []
    for txt in texts:
        ann = txt.with_suffix(".ann")
        if not ann.is_file():
            raise FileNotFoundError(f"{txt}: no annotation file {ann.name} beside it")
        text = txt.read_text(encoding="utf-8")
        spans, tags = brat_to_iob2(text, parse_ann(ann), discontinuous, entity_types, stats)
        for idx, seg_tags in split_segments(text, spans, tags, segment, max_words):
            sentences.append(([text[spans[i][0] : spans[i][1]] for i in idx], seg_tags))
    log.info("%s: %d documents, %d segments, entities %s", folder, len(texts), len(sentences), stats)
    return sentences


# --------------------------------------------------------------------------- classification tables


def _as_labels(value: Any, label_sep: str | None, where: str) -> list[str]:
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        raise ValueError(f"{where}: empty label (null, NaN or an empty cell)")
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, (int, float, bool)):
        return [str(value)]
    labels = [v.strip() for v in str(value).split(label_sep)] if label_sep else [str(value).strip()]
    return [label for label in labels if label]


def is_missing(value: Any) -> bool:
    """A missing label: null, NaN, an empty cell or the string "nan"."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and value.strip().lower() in ("", "nan")


def dropped_label(value: Any, drop_labels: Iterable[str] | None) -> bool:
    """Whether ``drop_labels`` discards an example with this label: an entry contained in the
    label, or ``"nan"`` for a missing label (DiaMED's rule)."""
    drop = list(drop_labels or ())
    if not drop:
        return False
    if is_missing(value):
        return "nan" in drop
    text = " ".join(map(str, value)) if isinstance(value, list) else str(value)
    return any(entry != "nan" and entry in text for entry in drop)


def _json_rows(path: Path) -> list[dict]:
    """A JSON array of objects (DiaMED's splits/*.json; NaN allowed), or an object holding one under "data"."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise ValueError(f"{path}: expected a JSON array of objects (one per example)")
    return data


def read_table(
    path: str | Path, text_field: str, label_field: str, label_sep: str | None = "|", fmt: str | None = None,
    drop_labels: Iterable[str] | None = None,
) -> list[LabelledText]:
    """TSV/CSV with a header row, JSONL with one object per line, or a JSON array of objects.

    Examples whose label ``drop_labels`` discards (see :func:`dropped_label`) are left out.
    """
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".")
    rows: list[LabelledText] = []
    dropped = 0
    if fmt in ("json", "jsonl"):
        # (where, object): a JSON array's examples by index, JSON Lines by line (mcbio.jsonl).
        located = ((f"{path}: example {i}", obj) for i, obj in enumerate(_json_rows(path))) if fmt == "json" \
            else ((f"{path}:{line_no}", obj) for line_no, obj in iter_jsonl(path))
        for where, obj in located:
            for key in (text_field, label_field):
                if key not in obj:
                    raise ValueError(f"{where}: no field '{key}' (fields: {', '.join(obj)})")
            if dropped_label(obj[label_field], drop_labels):
                dropped += 1
                continue
            rows.append((str(obj[text_field]), _as_labels(obj[label_field], label_sep, where)))
    elif fmt in ("tsv", "csv"):
        csv.field_size_limit(1 << 30)
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t" if fmt == "tsv" else ",")
            for key in (text_field, label_field):
                if key not in (reader.fieldnames or []):
                    raise ValueError(f"{path}: no column '{key}' in header (columns: {', '.join(reader.fieldnames or [])})")
            for line_no, row in enumerate(reader, start=2):
                if dropped_label(row[label_field], drop_labels):
                    dropped += 1
                    continue
                rows.append((row[text_field].strip(), _as_labels(row[label_field], label_sep, f"{path}:{line_no}")))
    else:
        raise ValueError(f"{path}: unknown table format '{fmt}' (tsv, csv, jsonl or json)")
    if dropped:
        log.info("%s: %d example(s) dropped for their label (drop_labels)", path, dropped)
    if not rows:
        raise ValueError(f"{path}: no examples")
    return rows


# --------------------------------------------------------------------------- Hugging Face datasets on disk


SPLIT_ALIASES = {"dev": ("dev", "validation", "val"), "train": ("train",), "test": ("test",)}


def read_hf_disk(path: str | Path, split: str, fields: dict[str, str], kind: str, label_sep: str | None = "|",
                 drop_labels: Iterable[str] | None = None) -> list:
    """A split of a ``datasets.save_to_disk`` folder (a DatasetDict, or one Dataset per split folder).

    ``kind="ner"`` reads ``fields['tokens']`` and ``fields['tags']`` (ClassLabel ids become names);
    otherwise ``fields['text']`` and ``fields['label']``. The ``dev`` split is the DatasetDict's
    ``dev``, ``validation`` or ``val`` (Hugging Face loading scripts name it ``validation``).
    """
    from datasets import DatasetDict, load_from_disk

    path = Path(path)
    data = load_from_disk(str(path))
    if isinstance(data, DatasetDict):
        name = next((n for n in SPLIT_ALIASES.get(split, (split,)) if n in data), None)
        if name is None:
            raise KeyError(f"{path}: no split '{split}' (has: {', '.join(data)})")
        data = data[name]
    columns = set(data.column_names)
    wanted = [fields["tokens"], fields["tags"]] if kind == "ner" else [fields["text"], fields["label"]]
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise ValueError(f"{path} [{split}]: no column(s) {missing} (columns: {', '.join(sorted(columns))})")

    def names(feature: Any) -> Any:
        inner = getattr(feature, "feature", feature)  # Sequence(ClassLabel) or ClassLabel
        return getattr(inner, "names", None)

    if kind == "ner":
        tag_names = names(data.features[fields["tags"]])
        return [
            (list(row[fields["tokens"]]), [tag_names[t] if tag_names else str(t) for t in row[fields["tags"]]])
            for row in data
        ]
    label_names = names(data.features[fields["label"]])
    out = []
    for i, row in enumerate(data):
        value = row[fields["label"]]
        if label_names is not None and value is not None:
            value = [label_names[v] for v in value] if isinstance(value, list) else label_names[value]
        if dropped_label(value, drop_labels):
            continue
        out.append((str(row[fields["text"]]), _as_labels(value, label_sep, f"{path} [{split}] row {i}")))
    return out


# --------------------------------------------------------------------------- one split of a task


def read_task_split(task, split: str, shared_data: str | None) -> list:
    """The examples of one split of a :class:`~mcbio.evaluate.tasks.TaskSpec`, whatever its format.

    A file missing inside the task's data folder is an error naming the file, the task and
    where the data is published.
    """
    path = task.path(split, shared_data)
    try:
        if task.format == "conll":
            return read_conll(path)
        if task.format == "brat":
            return read_brat(path, task.segment, task.max_words, task.discontinuous, task.entity_types or None)
        if task.format == "hf_disk":
            fields = {"tokens": task.tokens_field, "tags": task.tags_field, "text": task.text_field,
                      "label": task.label_field}
            return read_hf_disk(path, split, fields, "ner" if task.type == "ner" else "classification",
                                task.label_sep, task.drop_labels)
        if task.format in ("fracco", "frasimed", "meddialog"):
            from mcbio.evaluate import corpora

            return corpora.read_corpus_split(task, path, split)
        return read_table(path, task.text_field, task.label_field, task.label_sep, task.format, task.drop_labels)
    except FileNotFoundError as err:
        hint = f" {task.source}" if task.source else ""
        raise FileNotFoundError(f"task '{task.name}': {str(err).rstrip('.')}.{hint}") from None
