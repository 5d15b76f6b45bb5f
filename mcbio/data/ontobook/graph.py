"""One typed graph API for every terminology (CIM-10, CCAM, ATC), whatever its file format.

Nodes are concepts (a code with a French label, or a drug name with no code). Edges are
typed and directed; every relation is stored with its inverse so a walk can go both ways.
Sibling edges are not stored: they are the other children of a node's parents, computed
on demand (a category can have hundreds of sub-codes).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Set

BROADER = "broader"
NARROWER = "narrower"
SIBLING = "sibling"
HAS_MANIFESTATION = "has_manifestation"
MANIFESTATION_OF = "manifestation_of"
CAUSES = "causes"
CAUSED_BY = "caused_by"
EXCLUDES = "excludes"
EXCLUDED_BY = "excluded_by"
HAS_DRUG = "has_drug"
DRUG_OF = "drug_of"

INVERSE: Dict[str, str] = {
    BROADER: NARROWER,
    NARROWER: BROADER,
    SIBLING: SIBLING,
    HAS_MANIFESTATION: MANIFESTATION_OF,
    MANIFESTATION_OF: HAS_MANIFESTATION,
    CAUSES: CAUSED_BY,
    CAUSED_BY: CAUSES,
    EXCLUDES: EXCLUDED_BY,
    EXCLUDED_BY: EXCLUDES,
    HAS_DRUG: DRUG_OF,
    DRUG_OF: HAS_DRUG,
}
EDGE_TYPES = tuple(INVERSE)
HIERARCHICAL = (BROADER, NARROWER, SIBLING)
# Stored relations (sibling is derived from broader/narrower).
STORED_TYPES = tuple(t for t in EDGE_TYPES if t != SIBLING)


class GraphError(ValueError):
    """An ontology file cannot be turned into a graph; the message names the file and line."""


@dataclass(frozen=True)
class Concept:
    id: str
    label: str
    # chapter | block | category | subcode | atc1..atc5 | drug | concept (RDF)
    kind: str
    # Depth in the hierarchy (0 = top).
    level: int
    # The code as written in prose (``E11.2`` for CIM-10 ``E112``); None for drug names.
    code: Optional[str] = None

    @property
    def is_code(self) -> bool:
        return self.code is not None


class OntologyGraph:
    def __init__(self, name: str, code_pattern: str) -> None:
        self.name = name
        # Regex of a code as written in prose; used to find codes added to a rephrasing.
        self.code_pattern = code_pattern
        self.code_regex = re.compile(rf"(?<![\w.+-])(?:{code_pattern})(?![\w+])")
        self.concepts: Dict[str, Concept] = {}
        self._edges: Dict[str, Dict[str, List[str]]] = defaultdict(lambda: defaultdict(list))
        self._edge_sets: Dict[tuple, Set[str]] = defaultdict(set)
        self._by_code: Dict[str, str] = {}

    # ------------------------------------------------------------------ building
    def add_concept(self, concept: Concept) -> Concept:
        existing = self.concepts.get(concept.id)
        if existing is not None:
            return existing
        self.concepts[concept.id] = concept
        if concept.code is not None:
            self._by_code[normalise_code(concept.code)] = concept.id
        return concept

    def add_edge(self, source: str, etype: str, target: str) -> bool:
        """Add ``source -etype-> target`` and its inverse; False when already there or a self-loop."""
        if etype not in INVERSE or etype == SIBLING:
            raise ValueError(f"cannot store edge type {etype!r}; stored types: {', '.join(STORED_TYPES)}")
        for node in (source, target):
            if node not in self.concepts:
                raise KeyError(f"{self.name}: edge {source} -{etype}-> {target}: unknown concept {node!r}")
        if source == target or target in self._edge_sets[(source, etype)]:
            return False
        for a, t, b in ((source, etype, target), (target, INVERSE[etype], source)):
            self._edge_sets[(a, t)].add(b)
            self._edges[a][t].append(b)
        return True

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self.concepts)

    def __contains__(self, node: str) -> bool:
        return node in self.concepts

    def concept(self, node: str) -> Concept:
        return self.concepts[node]

    def by_code(self, code: str) -> Optional[str]:
        """Concept id of a code written with or without its dot."""
        return self._by_code.get(normalise_code(code))

    def neighbours(self, node: str, etype: str) -> List[str]:
        if etype == SIBLING:
            return self.siblings(node)
        edges = self._edges.get(node)
        return edges.get(etype, []) if edges else []

    def siblings(self, node: str) -> List[str]:
        seen: Dict[str, None] = {}
        for parent in self.neighbours(node, BROADER):
            for child in self.neighbours(parent, NARROWER):
                if child != node:
                    seen[child] = None
        return list(seen)

    def has_edge(self, source: str, etype: str, target: str) -> bool:
        if etype == SIBLING:
            return target in self.siblings(source)
        return target in self._edge_sets.get((source, etype), ())

    def edge_types(self, node: str) -> List[str]:
        edges = self._edges.get(node, {})
        types = [t for t, targets in edges.items() if targets]
        if self.siblings(node):
            types.append(SIBLING)
        return types

    def edge_counts(self) -> Dict[str, int]:
        counts: Dict[str, int] = defaultdict(int)
        for edges in self._edges.values():
            for etype, targets in edges.items():
                counts[etype] += len(targets)
        return dict(sorted(counts.items()))

    def kinds(self) -> Dict[str, int]:
        counts: Dict[str, int] = defaultdict(int)
        for concept in self.concepts.values():
            counts[concept.kind] += 1
        return dict(sorted(counts.items()))

    def nodes(self, kinds: Iterable[str] = (), requires: Iterable[str] = ()) -> List[str]:
        """Concept ids of the given kinds (all when empty) having every edge type in ``requires``."""
        kinds, requires = set(kinds), list(requires)
        return [
            node for node, c in self.concepts.items()
            if (not kinds or c.kind in kinds) and all(self.neighbours(node, t) for t in requires)
        ]

    def summary(self) -> dict:
        return {"ontology": self.name, "concepts": len(self), "kinds": self.kinds(), "edges": self.edge_counts()}


def normalise_code(code: str) -> str:
    """Codes compare without dots or spaces, upper-case: ``e11.2`` == ``E112``."""
    return code.replace(".", "").replace(" ", "").upper()
