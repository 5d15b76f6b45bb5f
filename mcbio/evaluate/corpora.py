"""The paper's document-level datasets in their published layouts (FrACCO, FRASIMED, MedDialog-FR).

Each reader returns ``[(text, [label, ...]), ...]`` for one split; the label construction
follows the datasets' own loaders and the authors' public harness:

* **Top-k by document frequency** (:func:`top_k_labels`): a document's labels are the *set*
  of its codes; the ``k`` codes found in the most documents (over all documents, before any
  split) are kept, ties broken by the code string (the authors' harness breaks ties by set
  iteration order, which varies between processes); documents left without a label are dropped.
* **Document-level splits** (:func:`split_documents`): the kept documents' names are sorted,
  shuffled with ``random.Random(split_seed)`` (42), then cut into ``int(0.8 n)`` train,
  ``int(0.1 n)`` dev and the rest test. The split is fixed, independent of the fine-tuning seed.

Layouts (the folder is the task's ``splits.*`` path, the same for the three splits):

``fracco`` (Zenodo 17284817, ``FRACCO.zip``)
    ``ann_txt_files/<doc>.txt`` (one document each) and ``DetectOnco_Final.csv`` with columns
    ``doc_name, id, label, code, content, full_span``. Rows with ``label == annotation_label``
    (``expression_CIM``) give the document ``doc_name`` (``<doc>.ann``) its ``code``.
``frasimed`` (Zenodo 8355629)
    A flat BRAT folder (``CANTEMIST-FRASIMED/`` or ``DISTEMIST-FRASIMED/``): entities are ``T``
    lines and codes are note lines ``#n<TAB>SYSTEM Tn<TAB>code`` (``ICD-O-3.1 T9  8500/3``,
    ``SNOMED T9  58477004``); the notes of ``code_system`` whose entity exists give the codes.
``meddialog`` (MedDialog-FR, women's health)
    The ``MedDialog-FR-women/`` folder: ``multilabel_annotation/dataset_multilabel_meddialog_22labels.csv``
    (tab-separated: ``id`` = ``<base>_q``, ``split`` = train / dev / test, ``labels`` = a list of
    UMLS CUIs) and ``post-editing/meddialog-fr-women_post-editing.csv`` (tab-separated: ``id``
    = ``<base>_q`` / ``<base>_a``, ``post-edited`` text, else ``machine_translation``); or one
    CSV/TSV/parquet table with ``question``, ``answer``, ``labels`` and ``split`` columns. The text is
    ``text_template`` (``"Question: {question}\\n\\nRéponse: {answer}"``); ``dev`` is the validation split.

Errors name the file (and line): a missing file, a table without an expected column, a
BRAT note with no code, a label list that does not parse.
"""

from __future__ import annotations

import ast
import csv
import logging
import random
import string
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from mcbio.evaluate.loaders import LabelledText, ann_lines, brat_text_files, is_missing, parse_ann

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
SPLIT_NAMES = {"train": "train", "dev": "dev", "validation": "dev", "val": "dev", "valid": "dev", "test": "test"}

FRACCO_TEXTS = "ann_txt_files"
FRACCO_CSV = "DetectOnco_Final.csv"
MEDDIALOG_LABELS = "multilabel_annotation/dataset_multilabel_meddialog_22labels.csv"
MEDDIALOG_TEXTS = "post-editing/meddialog-fr-women_post-editing.csv"


# --------------------------------------------------------------------------- label and split rules


def top_k_labels(doc_labels: Mapping[str, Iterable[str]], k: int | None) -> list[str]:
    """The ``k`` labels present in the most documents (each document counts a label once).

    Ties are broken by the label string, so the choice is the same in every process.
    ``k=None`` keeps every label. Returned in rank order.
    """
    df: Counter[str] = Counter()
    for labels in doc_labels.values():
        df.update(set(labels))
    ranked = sorted(df, key=lambda label: (-df[label], label))
    return ranked if k is None else ranked[:k]


def keep_top_k(doc_labels: Mapping[str, Iterable[str]], k: int | None) -> dict[str, list[str]]:
    """Each document's labels restricted to :func:`top_k_labels` (sorted); documents left with none dropped."""
    kept = set(top_k_labels(doc_labels, k))
    out = {}
    for name, labels in doc_labels.items():
        mine = sorted(set(labels) & kept)
        if mine:
            out[name] = mine
    return out


def split_documents(names: Iterable[str], seed: int = 42, fractions: Sequence[float] = (0.8, 0.1)) -> dict[str, list[str]]:
    """Sorted names shuffled by ``random.Random(seed)``; ``int(f_train n)`` train, ``int(f_dev n)`` dev, the rest test."""
    order = sorted(names)
    random.Random(seed).shuffle(order)
    n = len(order)
    n_train, n_dev = int(fractions[0] * n), int(fractions[1] * n)
    return {"train": order[:n_train], "dev": order[n_train:n_train + n_dev], "test": order[n_train + n_dev:]}


def document_splits(texts: Mapping[str, str], doc_labels: Mapping[str, Iterable[str]], top_k: int | None,
                    seed: int, fractions: Sequence[float]) -> dict[str, list[LabelledText]]:
    """Top-k labels, then the document-level split of the documents that keep a label."""
    kept = keep_top_k(doc_labels, top_k)
    parts = split_documents(kept, seed, fractions)
    return {split: [(texts[name], kept[name]) for name in names] for split, names in parts.items()}


# --------------------------------------------------------------------------- tables


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def _delimiter(path: Path) -> str:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        header = handle.readline()
    if "\t" in header:
        return "\t"
    return ";" if header.count(";") > header.count(",") else ","


def read_rows(path: Path, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV/TSV with a header (delimiter from the header line); missing columns name the file."""
    csv.field_size_limit(1 << 30)
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=_delimiter(path))
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in required if c not in columns]
        if missing:
            raise ValueError(f"{path}:1: no column {', '.join(repr(c) for c in missing)} in the header "
                             f"(columns: {', '.join(columns) or 'none'})")
        rows = []
        for row in reader:
            rows.append((reader.line_num, {(k or "").strip(): (v if v is not None else "") for k, v in row.items()}))
    return rows


# --------------------------------------------------------------------------- FrACCO


def _doc_stem(name: str) -> str:
    name = name.strip()
    for suffix in (".ann", ".txt"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def fracco_documents(folder: str | Path, annotation_label: str = "expression_CIM") -> tuple[dict[str, str], dict[str, set[str]]]:
    """(texts, codes) per document of a FrACCO folder: the codes of its ``annotation_label`` rows."""
    folder = Path(folder)
    table = _require_file(folder / FRACCO_CSV, "FrACCO annotation table")
    text_dir = folder / FRACCO_TEXTS
    if not text_dir.is_dir():
        raise FileNotFoundError(f"FrACCO text folder not found: {text_dir}")
    codes: dict[str, set[str]] = {}
    texts: dict[str, str] = {}
    empty = 0
    for line_no, row in read_rows(table, ("doc_name", "label", "code")):
        if row["label"].strip() != annotation_label:
            continue
        code = row["code"].strip()
        if not code:
            empty += 1
            continue
        doc = _doc_stem(row["doc_name"])
        if not doc:
            raise ValueError(f"{table}:{line_no}: empty doc_name")
        if doc not in texts:
            txt = text_dir / f"{doc}.txt"
            if not txt.is_file():
                raise FileNotFoundError(f"{txt} (document '{row['doc_name']}' of {table.name}:{line_no}) not found")
            texts[doc] = txt.read_text(encoding="utf-8")
        codes.setdefault(doc, set()).add(code)
    if empty:
        log.warning("%s: %d '%s' row(s) without a code ignored", table, empty, annotation_label)
    if not codes:
        raise ValueError(f"{table}: no row with label '{annotation_label}'")
    return texts, codes


# --------------------------------------------------------------------------- FRASIMED (BRAT notes)


@dataclass(frozen=True)
class BratNote:
    id: str
    system: str  # e.g. ICD-O-3.1, SNOMED, AnnotatorNotes
    target: str  # the entity it normalises (Tn)
    code: str
    line: int


def parse_notes(path: str | Path) -> list[BratNote]:
    """The note lines (``#n<TAB>SYSTEM Tn<TAB>code``) of a BRAT ``.ann`` file; a note with no code is an error."""
    path = Path(path)
    notes = []
    for line_no, raw, parts in ann_lines(path, "#"):
        head = parts[1].split() if len(parts) >= 2 else []
        code = parts[2].strip() if len(parts) >= 3 else ""
        if len(head) != 2 or not code:
            raise ValueError(f"{path}:{line_no}: BRAT note without a code: {raw.rstrip()!r} "
                             f"(expected '#n<TAB>SYSTEM Tn<TAB>code', e.g. '#1<TAB>ICD-O-3.1 T1<TAB>8500/3')")
        notes.append(BratNote(parts[0], head[0], head[1], code, line_no))
    return notes


def frasimed_documents(folder: str | Path, code_system: str) -> tuple[dict[str, str], dict[str, set[str]]]:
    """(texts, codes) per document of a flat BRAT folder: the ``code_system`` notes of its entities."""
    folder = Path(folder)
    txts = brat_text_files(folder)
    texts: dict[str, str] = {}
    codes: dict[str, set[str]] = {}
    orphans = 0
    for txt in txts:
        ann = txt.with_suffix(".ann")
        if not ann.is_file():
            raise FileNotFoundError(f"{ann} (the annotations of {txt.name}) not found")
        entities = {e.id for e in parse_ann(ann)}
        texts[txt.stem] = txt.read_text(encoding="utf-8")
        for note in parse_notes(ann):
            if note.system != code_system:
                continue
            if note.target not in entities:
                orphans += 1
                continue
            codes.setdefault(txt.stem, set()).add(note.code)
    if orphans:
        log.warning("%s: %d %s note(s) pointing to no entity ignored", folder, orphans, code_system)
    if not codes:
        raise ValueError(f"{folder}: no '{code_system}' note in any .ann file (code systems are e.g. ICD-O-3.1, SNOMED)")
    return texts, codes


# --------------------------------------------------------------------------- MedDialog-FR


def _template_fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def fill_template(template: str, values: Mapping[str, Any]) -> str:
    """``template`` filled from ``values``; paragraphs (``\\n\\n``) whose fields are all empty are left out."""
    filled = {f: "" if is_missing(values.get(f)) else str(values.get(f)).strip() for f in _template_fields(template)}
    kept = [part for part in template.split("\n\n")
            if not _template_fields(part) or any(filled[f] for f in _template_fields(part))]
    return "\n\n".join(kept).format_map(filled)


def parse_label_list(value: Any, where: str) -> list[str]:
    """A list of labels: a list, a Python/JSON list literal (``['C0011849', 'C0020538']``) or ``a|b``."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    if is_missing(value):
        return []
    text = str(value).strip()
    if text.startswith("["):
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ValueError(f"{where}: labels {text[:80]!r} are not a list literal") from None
        if not isinstance(parsed, (list, tuple)):
            raise ValueError(f"{where}: labels {text[:80]!r} are not a list")
        return [str(v).strip() for v in parsed if str(v).strip()]
    return [v.strip() for v in text.split("|") if v.strip()]


def _split_name(value: str, where: str) -> str:
    name = SPLIT_NAMES.get(str(value).strip().lower())
    if name is None:
        raise ValueError(f"{where}: split {value!r} is not one of train, dev (validation), test")
    return name


def meddialog_splits(path: str | Path, template: str, label_field: str = "labels",
                     split_field: str = "split") -> dict[str, list[LabelledText]]:
    """train/dev/test examples of MedDialog-FR (either layout of the module docstring)."""
    path = Path(path)
    out: dict[str, list[LabelledText]] = {s: [] for s in SPLITS}
    skipped = Counter()
    if path.is_dir():
        labels_file = _require_file(path / MEDDIALOG_LABELS, "MedDialog-FR label table")
        texts_file = _require_file(path / MEDDIALOG_TEXTS, "MedDialog-FR text table")
        texts: dict[str, str] = {}
        for _, row in read_rows(texts_file, ("id",)):
            text = row.get("post-edited", "").strip() or row.get("machine_translation", "").strip()
            texts[row["id"].strip()] = text
        if not any(texts.values()):
            raise ValueError(f"{texts_file}: no 'post-edited' or 'machine_translation' text")
        for line_no, row in read_rows(labels_file, ("id", split_field, label_field)):
            where = f"{labels_file}:{line_no}"
            qid = row["id"].strip()
            base = qid[:-2] if qid.endswith("_q") else qid
            question, answer = texts.get(f"{base}_q") or texts.get(qid, ""), texts.get(f"{base}_a", "")
            labels = parse_label_list(row[label_field], where)
            if not question or not labels:
                skipped["no question text" if not question else "no label"] += 1
                continue
            out[_split_name(row[split_field], where)].append(
                (fill_template(template, {"question": question, "answer": answer}), labels))
    else:
        _require_file(path, "MedDialog-FR table")
        fields = _template_fields(template)
        if path.suffix == ".parquet":
            import pandas as pd

            frame = pd.read_parquet(path)
            missing = [c for c in (*fields, label_field, split_field) if c not in frame.columns]
            if missing:
                raise ValueError(f"{path}: no column {', '.join(map(repr, missing))} (columns: {', '.join(frame.columns)})")
            rows = [(i + 1, dict(r)) for i, r in enumerate(frame.to_dict("records"))]
            where_of = lambda n: f"{path} row {n}"  # noqa: E731
        else:
            rows = read_rows(path, (*fields, label_field, split_field))
            where_of = lambda n: f"{path}:{n}"  # noqa: E731
        for n, row in rows:
            labels = parse_label_list(row[label_field], where_of(n))
            if not labels or is_missing(row[fields[0]]):
                skipped["no label" if not labels else "no text"] += 1
                continue
            out[_split_name(row[split_field], where_of(n))].append((fill_template(template, row), labels))
    if skipped:
        log.warning("%s: examples skipped: %s", path, dict(skipped))
    return out


# --------------------------------------------------------------------------- dispatch (with a per-process cache)

_CACHE: dict[tuple, dict[str, list[LabelledText]]] = {}


def _signature(path: Path) -> tuple:
    files = [path] if path.is_file() else [path / FRACCO_CSV, path / MEDDIALOG_LABELS, path]
    return tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files if f.exists())


def corpus_splits(task, path: str | Path) -> dict[str, list[LabelledText]]:
    """The three splits of a ``fracco`` / ``frasimed`` / ``meddialog`` task (computed once per process)."""
    path = Path(path)
    key = (task.format, str(path.resolve()), _signature(path), task.top_k, task.split_seed,
           tuple(task.split_fractions), task.annotation_label, task.code_system, task.text_template,
           task.label_field, task.split_field)
    if key not in _CACHE:
        if task.format == "fracco":
            texts, codes = fracco_documents(path, task.annotation_label)
            splits = document_splits(texts, codes, task.top_k, task.split_seed, task.split_fractions)
        elif task.format == "frasimed":
            texts, codes = frasimed_documents(path, task.code_system)
            splits = document_splits(texts, codes, task.top_k, task.split_seed, task.split_fractions)
        elif task.format == "meddialog":
            splits = meddialog_splits(path, task.text_template, task.label_field, task.split_field)
            if task.top_k is not None:
                kept = set(top_k_labels({str(i): labels for i, (_, labels) in enumerate(
                    ex for rows in splits.values() for ex in rows)}, task.top_k))
                splits = {s: [(t, sorted(set(ls) & kept)) for t, ls in rows if set(ls) & kept]
                          for s, rows in splits.items()}
        else:
            raise ValueError(f"task '{task.name}': format '{task.format}' is not a corpus format")
        sizes = {s: len(rows) for s, rows in splits.items()}
        labels = {label for rows in splits.values() for _, ls in rows for label in ls}
        log.info("%s (%s): %s examples, %d labels", task.name, path, sizes, len(labels))
        _CACHE[key] = splits
    return _CACHE[key]


def read_corpus_split(task, path: str | Path, split: str) -> list[LabelledText]:
    if split not in SPLITS:
        raise KeyError(f"task '{task.name}': no split '{split}' (train, dev, test)")
    rows = corpus_splits(task, path)[split]
    if not rows:
        raise ValueError(f"task '{task.name}': the {split} split read from {path} is empty")
    return list(rows)
