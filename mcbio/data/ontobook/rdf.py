"""RDF / OWL / SKOS terminologies (CIM-10, CCAM, ATC as published by the French health agency).

Which predicates carry the code, the label, the hierarchy and the other relations is
config (``RdfMappingConfig``): the defaults read plain SKOS and OWL class hierarchies;
a publisher's own relation properties (exclusions, manifestations...) are mapped to the
graph's edge types by listing their IRIs.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from mcbio.data.ontobook.graph import BROADER, STORED_TYPES, Concept, GraphError, OntologyGraph


def _local_name(iri: str) -> str:
    return iri.rstrip("/#").rsplit("#", 1)[-1].rsplit("/", 1)[-1]


def load_rdf(path: str | Path, mapping, name: str) -> Tuple[OntologyGraph, dict]:
    """Graph of an RDF file; ``mapping`` is an ``RdfMappingConfig``."""
    import rdflib
    from rdflib.util import guess_format

    path = Path(path)
    if not path.is_file():
        raise GraphError(f"{name}: RDF file not found: {path}")
    store = rdflib.Graph()
    try:
        store.parse(str(path), format=mapping.format or guess_format(str(path)))
    except Exception as err:  # rdflib raises parser-specific errors
        raise GraphError(f"{path}: cannot parse RDF: {err}") from None

    def iris(values: List[str]) -> List[rdflib.URIRef]:
        return [rdflib.URIRef(v) for v in values]

    concept_types = iris(mapping.concept_types)
    subjects = {s for t in concept_types for s in store.subjects(rdflib.RDF.type, t) if isinstance(s, rdflib.URIRef)}
    broader_pairs = [(s, o) for p in iris(mapping.broader) for s, o in store.subject_objects(p)]
    broader_pairs += [(o, s) for p in iris(mapping.narrower) for s, o in store.subject_objects(p)]
    broader_pairs = [(s, o) for s, o in broader_pairs if isinstance(s, rdflib.URIRef) and isinstance(o, rdflib.URIRef)]
    subjects.update(x for pair in broader_pairs for x in pair)

    def first_literal(node, predicates) -> Optional[str]:
        best = None
        for pred in iris(predicates):
            for value in store.objects(node, pred):
                if not isinstance(value, rdflib.Literal):
                    continue
                if value.language == mapping.language:
                    return str(value).strip()
                if best is None and value.language in (None, ""):
                    best = str(value).strip()
        return best

    ids: Dict[rdflib.URIRef, str] = {}
    labels: Dict[str, str] = {}
    codes: Dict[str, str] = {}
    skipped = 0
    for subject in subjects:
        label = first_literal(subject, mapping.label)
        if not label:
            skipped += 1  # e.g. an OWL root class with no French label
            continue
        code = first_literal(subject, mapping.code) if mapping.code else None
        code = code or _local_name(str(subject))
        ids[subject] = code
        labels[code] = label
        codes[code] = code

    parents: Dict[str, List[str]] = {}
    for child, parent in broader_pairs:
        if child in ids and parent in ids:
            parents.setdefault(ids[child], []).append(ids[parent])
    depth = _depths(list(labels), parents)

    graph = OntologyGraph(name, mapping.code_pattern)
    for node, label in labels.items():
        graph.add_concept(Concept(node, label, "concept", depth[node], codes[node]))
    for child, ps in parents.items():
        for parent in ps:
            graph.add_edge(child, BROADER, parent)
    relation_edges = 0
    for etype, predicates in mapping.relations.items():
        if etype not in STORED_TYPES:
            raise GraphError(f"{name}: rdf.relations: unknown edge type {etype!r}; use one of {', '.join(STORED_TYPES)}")
        for pred in iris(predicates):
            for s, o in store.subject_objects(pred):
                if s in ids and o in ids:
                    relation_edges += graph.add_edge(ids[s], etype, ids[o])
    return graph, {"triples": len(store), "skipped_without_label": skipped, "relation_edges": relation_edges}


def _depths(nodes: List[str], parents: Dict[str, List[str]]) -> Dict[str, int]:
    """Shortest distance from a root (a node with no parent); cycles get the depth first reached."""
    children: Dict[str, List[str]] = {}
    for child, ps in parents.items():
        for p in ps:
            children.setdefault(p, []).append(child)
    depth = {n: 0 for n in nodes if not parents.get(n)}
    queue = deque(depth)
    while queue:
        node = queue.popleft()
        for child in children.get(node, []):
            if child not in depth:
                depth[child] = depth[node] + 1
                queue.append(child)
    return {n: depth.get(n, 0) for n in nodes}
