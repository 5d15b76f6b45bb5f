"""ATC from the JSON form ``{ATC code: [names...]}`` (edsnlp's ``drugs.json``).

Each list holds at most one lower-case entry, the code's French label (the INN at level
5, the class name above), and upper-case brand names. Levels come from the code
structure (A / A10 / A10B / A10BA / A10BA02); classes missing from the file are added
from their codes; level-1 groups are labelled from a shipped table; classes the file
never labels keep a generic label naming their level. Brand names become ``drug``
leaves linked by ``has_drug`` / ``drug_of``; a brand shared by several codes is one node.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path
from typing import Dict, List, Tuple

from mcbio.data.ontobook.graph import HAS_DRUG, NARROWER, Concept, GraphError, OntologyGraph

log = logging.getLogger(__name__)

RESOURCES = Path(__file__).resolve().parents[2] / "resources" / "ontologies"
GROUP_TABLE = RESOURCES / "atc_groups.csv"

# Level-2..5 codes as written in prose (level 1 is a single letter, checked by presence only).
ATC_CODE_PATTERN = r"[A-Z]\d{2}(?:[A-Z]{1,2}(?:\d{2})?)?"
LEVEL_LENGTHS = (1, 3, 4, 5, 7)
LEVEL_NAMES = {
    1: "groupe anatomique principal",
    2: "sous-groupe thérapeutique",
    3: "sous-groupe pharmacologique",
    4: "sous-groupe chimique",
    5: "substance chimique",
}
_ATC_RE = re.compile(r"^[A-Z](?:\d{2}(?:[A-Z](?:[A-Z](?:\d{2})?)?)?)?$")


def atc_level(code: str) -> int:
    return LEVEL_LENGTHS.index(len(code)) + 1


def atc_parent(code: str) -> str | None:
    level = atc_level(code)
    return code[: LEVEL_LENGTHS[level - 2]] if level > 1 else None


def read_group_table(path: Path) -> Dict[str, str]:
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if not {"code", "label"} <= set(reader.fieldnames or []):
            raise GraphError(f"{path}: expected columns code,label; found {reader.fieldnames}")
        return {row["code"].strip(): row["label"].strip() for row in reader}


def load_atc_json(path: str | Path, groups_table: str | Path | None = None, name: str = "atc") -> Tuple[OntologyGraph, dict]:
    path = Path(path)
    if not path.is_file():
        raise GraphError(f"ATC file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise GraphError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}") from None
    if not isinstance(data, dict):
        raise GraphError(f"{path}: expected an object {{ATC code: [names]}}, got {type(data).__name__}")
    groups = read_group_table(Path(groups_table) if groups_table else GROUP_TABLE)

    labels: Dict[str, str] = dict(groups)
    brands: Dict[str, List[str]] = {}
    invalid: List[str] = []
    for code, names in list(data.items()):
        if not _ATC_RE.match(code):
            # Skipped, not fatal: the public file has typos such as 'JO5AX09' (letter O).
            log.warning("%s: key %r is not an ATC code: skipped", path, code)
            invalid.append(code)
            del data[code]
            continue
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise GraphError(f"{path}: value of {code!r} must be a list of names")
        lower = [n.strip() for n in names if n.strip() and n != n.upper()]
        if lower:
            labels[code] = lower[0]
        brands[code] = [n.strip() for n in names if n.strip() and n == n.upper()]

    codes = set()
    for code in data:
        while code:
            codes.add(code)
            code = atc_parent(code)
    graph = OntologyGraph(name, ATC_CODE_PATTERN)
    unlabelled = 0
    for code in sorted(codes, key=lambda c: (len(c), c)):
        level = atc_level(code)
        label = labels.get(code)
        if label is None:
            unlabelled += 1
            label = LEVEL_NAMES[level]
        graph.add_concept(Concept(code, label, f"atc{level}", level - 1, code))
        parent = atc_parent(code)
        if parent:
            graph.add_edge(parent, NARROWER, code)
    for code, names in brands.items():
        for brand in names:
            node = f"drug:{brand}"
            graph.add_concept(Concept(node, brand, "drug", atc_level(code), None))
            graph.add_edge(code, HAS_DRUG, node)
    return graph, {"unlabelled_classes": unlabelled, "codes_in_file": len(data), "invalid_keys": invalid}
