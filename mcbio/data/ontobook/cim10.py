"""CIM-10 (French ICD-10, ATIH) from the CSV form: ``code,type,ssr,psy,short,long``.

The CSV holds categories (3 characters) and sub-codes (4 to 6 characters, ATIH
extensions with ``+``) but no chapter or block rows: the hierarchy is rebuilt from the
code structure (a code's parent is its longest proper prefix that is itself a code;
categories hang under the chapter whose range holds them, from a shipped table).

Relations beyond the hierarchy come from the dagger/asterisk references written inside
the labels (the CSV has no other relation):

* ``Méningite tuberculeuse (G01*)`` on A17.0: an etiology code pointing to its
  manifestation (asterisk) code -> ``has_manifestation`` (inverse ``manifestation_of``);
* ``Arthrite tuberculeuse (A18.0)`` on M01.1 (an asterisk code) or ``(E84.1+)``: a
  manifestation pointing to the disease that causes it -> ``caused_by`` (inverse ``causes``).

Exclusion notes (``Excl.:``) are not in the CSV: exclusion edges come only from RDF sources.
"""

from __future__ import annotations

import csv
import gzip
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from mcbio.data.ontobook.graph import (
    CAUSED_BY,
    HAS_MANIFESTATION,
    NARROWER,
    Concept,
    GraphError,
    OntologyGraph,
)

RESOURCES = Path(__file__).resolve().parents[2] / "resources" / "ontologies"
CHAPTER_TABLE = RESOURCES / "cim10_chapters.csv"

# A code as written in prose: a range (A00-B99), a category (E11) or a sub-code with or
# without its dot (E11.2 / E112, W46.89, C16.9+0).
CIM10_CODE_PATTERN = r"[A-Z]\d{2}-[A-Z]\d{2}|[A-Z]\d{2}(?:\.?\d{1,3})?(?:\+\d{1,2})?"
REQUIRED_COLUMNS = ("code", "long")

_CODE_RE = re.compile(r"^[A-Z]\d{2}[0-9+]*$")
# A code reference inside a label: "G01*", "E84.1+", "G30.-", "I60-I67", "M07.0-M07.3*".
_REF_RE = re.compile(r"([A-Z]\d{2}(?:\.\d{1,2}|\.-)?)(?:-([A-Z]\d{2}(?:\.\d{1,2})?))?\s*([*+†])?")
_PAREN_RE = re.compile(r"\s*\(([^()]*)\)")
_MARKER_RE = re.compile(r"^\*\*\*[^*]*\*\*\*\s*")


@dataclass(frozen=True)
class RangeRow:
    """A chapter or block: a code range with a label."""

    start: str
    end: str
    label: str
    chapter: str = ""

    @property
    def id(self) -> str:
        return f"{self.start}-{self.end}"

    def holds(self, category: str) -> bool:
        return self.start <= category[:3] <= self.end


def display_code(code: str) -> str:
    """``E112`` -> ``E11.2``; ``C169+0`` -> ``C16.9+0``; categories and ranges unchanged."""
    if len(code) <= 3 or "-" in code or code[3] == "+":
        return code
    return f"{code[:3]}.{code[3:]}"


def read_range_table(path: Path) -> List[RangeRow]:
    rows: List[RangeRow] = []
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"start", "end", "label"} - set(reader.fieldnames or [])
        if missing:
            raise GraphError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for line_no, row in enumerate(reader, start=2):
            start, end = row["start"].strip(), row["end"].strip()
            if not (_CODE_RE.match(start) and _CODE_RE.match(end)) or start > end:
                raise GraphError(f"{path}:{line_no}: invalid range {start!r}-{end!r}")
            rows.append(RangeRow(start, end, row["label"].strip(), (row.get("chapter") or "").strip()))
    return rows


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def split_label(raw: str) -> Tuple[str, List[Tuple[str, Optional[str], Optional[str]]]]:
    """Clean label and its code references ``(start, end or None, mark or None)``.

    Parenthesised groups that hold code references are removed from the label (they become
    edges), so a verbalised label never carries a code that is not a node of the walk.
    """
    label = _MARKER_RE.sub("", raw.strip())
    refs: List[Tuple[str, Optional[str], Optional[str]]] = []

    def take(match: re.Match) -> str:
        inner = match.group(1)
        found = [(m.group(1), m.group(2), m.group(3)) for m in _REF_RE.finditer(inner)]
        if not found:
            return match.group(0)
        refs.extend(found)
        return ""

    label = _PAREN_RE.sub(take, label)
    label = re.sub(r"\s{2,}", " ", label).strip(" ,")
    return label, refs


class _RefResolver:
    """Turns a label reference (code, range, ``X.-``) into concept ids of the graph."""

    def __init__(self, graph: OntologyGraph, codes_by_len: Dict[int, List[str]], max_range: int) -> None:
        self.graph = graph
        self.codes_by_len = codes_by_len
        self.max_range = max_range

    def resolve(self, start: str, end: Optional[str]) -> List[str]:
        start = start.replace(".-", "").replace(".", "")
        if end is None:
            node = self.graph.by_code(start)
            return [node] if node else []
        end = end.replace(".", "")
        whole = f"{start}-{end}"
        if whole in self.graph:  # a chapter or block
            return [whole]
        if len(start) != len(end):
            return []
        inside = [c for c in self.codes_by_len.get(len(start), []) if start <= c <= end]
        return inside if 0 < len(inside) <= self.max_range else []


def load_cim10_csv(
    path: str | Path,
    chapters_table: str | Path | None = None,
    blocks_table: str | Path | None = None,
    max_range_expansion: int = 5,
    name: str = "cim10",
) -> Tuple[OntologyGraph, dict]:
    """Graph of the CIM-10 CSV; returns it with load statistics (unresolved references...)."""
    path = Path(path)
    if not path.is_file():
        raise GraphError(f"CIM-10 file not found: {path}")
    chapters = read_range_table(Path(chapters_table) if chapters_table else CHAPTER_TABLE)
    blocks = read_range_table(Path(blocks_table)) if blocks_table else []
    graph = OntologyGraph(name, CIM10_CODE_PATTERN)
    for row in chapters:
        graph.add_concept(Concept(row.id, row.label, "chapter", 0, row.id))
    for row in blocks:
        graph.add_concept(Concept(row.id, row.label, "block", 1, row.id))
        parent = next((c for c in chapters if c.holds(row.start)), None)
        if parent is None:
            raise GraphError(f"{blocks_table}: block {row.id} lies in no chapter")
        graph.add_edge(parent.id, NARROWER, row.id)

    rows: List[Tuple[str, str, list]] = []
    with _open_text(path) as handle:
        reader = csv.DictReader(handle)
        missing = set(REQUIRED_COLUMNS) - set(reader.fieldnames or [])
        if missing:
            raise GraphError(f"{path}: missing column(s) {', '.join(sorted(missing))}; found {reader.fieldnames}")
        for line_no, row in enumerate(reader, start=2):
            code = (row["code"] or "").strip().upper()
            if not _CODE_RE.match(code):
                raise GraphError(f"{path}:{line_no}: not a CIM-10 code: {row['code']!r}")
            label, refs = split_label(row["long"] or row.get("short") or "")
            if not label:
                raise GraphError(f"{path}:{line_no}: code {code} has an empty label")
            rows.append((code, label, refs))

    codes = {code for code, _, _ in rows}
    for code, label, _ in rows:
        kind, level = ("category", 2) if len(code) == 3 else ("subcode", 3 + len(code.replace("+", "")) - 4)
        graph.add_concept(Concept(code, label, kind, level, display_code(code)))
    for code, _, _ in rows:
        graph.add_edge(_parent(code, codes, chapters, blocks, path), NARROWER, code)

    codes_by_len: Dict[int, List[str]] = {}
    for code in sorted(codes):
        codes_by_len.setdefault(len(code), []).append(code)
    resolver = _RefResolver(graph, codes_by_len, max_range_expansion)
    stats = {"references": 0, "unresolved_references": 0}
    for code, _, refs in rows:
        for start, end, mark in refs:
            stats["references"] += 1
            targets = resolver.resolve(start, end)
            if not targets:
                stats["unresolved_references"] += 1
            # "(X*)": X is the manifestation of this code; "(X)"/"(X+)": this code is due to X.
            etype = HAS_MANIFESTATION if mark == "*" else CAUSED_BY
            for target in targets:
                graph.add_edge(code, etype, target)
    return graph, stats


def _parent(code: str, codes: set, chapters: List[RangeRow], blocks: List[RangeRow], path: Path) -> str:
    for cut in range(len(code) - 1, 2, -1):
        prefix = code[:cut].rstrip("+")
        if prefix != code and prefix in codes:
            return prefix
    holder = next((b for b in blocks if b.holds(code)), None) or next((c for c in chapters if c.holds(code)), None)
    if holder is None:
        raise GraphError(f"{path}: code {code} lies in no CIM-10 chapter of the chapter table")
    return holder.id
