"""Deterministic French verbalisation of a walk.

It measures a walk (the 300-character cut applies to this text), shows the walk to the
LLM, and is the answer of the ``rules`` backend. It works from a plain payload (node
labels and codes + steps) so the rules responder can rebuild it from the prompt alone.
"""

from __future__ import annotations

from typing import Dict, List

from mcbio.data.ontobook.graph import OntologyGraph
from mcbio.data.ontobook.walks import Walk

ONTOLOGY_NAMES = {
    "cim10": "la CIM-10 (Classification internationale des maladies)",
    "ccam": "la CCAM (Classification commune des actes médicaux)",
    "atc": "la classification ATC (anatomique, thérapeutique et chimique) des médicaments",
}

# "{a}" and "{b}" are the mentions of the step's source and target.
TEMPLATES: Dict[str, str] = {
    "narrower": "{a} comprend {b}.",
    "broader": "{a} fait partie de {b}.",
    "sibling": "{a} et {b} sont classés au même niveau, sous le même parent.",
    "has_manifestation": "{a} peut se manifester par {b}.",
    "manifestation_of": "{a} est une manifestation de {b}.",
    "causes": "{a} peut être à l'origine de {b}.",
    "caused_by": "{a} a pour cause {b}.",
    "excludes": "{a} exclut {b}, codé à part.",
    "excluded_by": "{a} est exclu de {b}.",
    "has_drug": "{a} est commercialisé notamment sous le nom {b}.",
    "drug_of": "{a} est un nom commercial de {b}.",
}

# How a relation is described to the LLM (prompt glossary).
RELATION_GLOSSARY: Dict[str, str] = {
    "narrower": "la source englobe la cible (plus spécifique)",
    "broader": "la source est incluse dans la cible (plus générale)",
    "sibling": "même parent direct",
    "has_manifestation": "la source (étiologie) se manifeste par la cible",
    "manifestation_of": "la source est une manifestation de la cible",
    "causes": "la source est la cause de la cible",
    "caused_by": "la source est due à la cible",
    "excludes": "la cible est exclue de la source et codée ailleurs",
    "excluded_by": "la source est exclue de la cible",
    "has_drug": "la cible est un nom commercial de la substance ou classe source",
    "drug_of": "la source est un nom commercial de la cible",
}


def walk_payload(walk: Walk, graph: OntologyGraph) -> dict:
    nodes = {}
    for node in walk.nodes:
        c = graph.concept(node)
        nodes[node] = {"label": c.label, "code": c.code, "kind": c.kind}
    return {"ontology": walk.ontology, "walk_type": walk.walk_type, "start": walk.start,
            "nodes": nodes, "steps": [list(s) for s in walk.steps]}


def node_ref(node: dict) -> str:
    """How a node is named in relations: its code, or its name when it has none (drugs)."""
    return node["code"] or node["label"]


def verbalise_payload(payload: dict) -> str:
    nodes = payload["nodes"]
    introduced: set = set()

    def mention(node_id: str) -> str:
        node = nodes[node_id]
        if node["code"] is None:
            return node["label"]
        if node_id in introduced:
            return node["code"]
        introduced.add(node_id)
        return f"{node['label']} ({node['code']})"

    sentences: List[str] = []
    if not payload["steps"]:
        sentences.append(mention(payload["start"]) + ".")
    for source, etype, target in payload["steps"]:
        a = mention(source)
        sentence = TEMPLATES[etype].format(a=a, b=mention(target))
        sentences.append(sentence[0].upper() + sentence[1:])
    return " ".join(sentences)


def verbalise(walk: Walk, graph: OntologyGraph) -> str:
    return verbalise_payload(walk_payload(walk, graph))


def walk_lines(payload: dict) -> str:
    """The walk as numbered steps for the prompt."""
    nodes = payload["nodes"]

    def show(node_id: str) -> str:
        node = nodes[node_id]
        return f"{node['code']} « {node['label']} »" if node["code"] else f"« {node['label']} » (nom commercial)"

    lines = [f"0. départ : {show(payload['start'])}"]
    for i, (source, etype, target) in enumerate(payload["steps"], start=1):
        lines.append(f"{i}. {show(source)} --[{etype}]--> {show(target)}")
    return "\n".join(lines)
