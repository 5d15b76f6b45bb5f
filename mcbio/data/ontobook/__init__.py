"""OntoBook: synthetic medical textbook passages from random walks on CIM-10, CCAM and ATC.

graph (one typed graph API) <- cim10 / atc / rdf loaders (sources: config -> graph);
walks (roulette-biased random walks); verbalise (deterministic French text of a walk);
rephrase (prompt, answer schema, code/relation verification, the ``rules`` responder);
build (one shard end to end, and the merge into documents + statistics).
"""

from mcbio.data.ontobook.graph import EDGE_TYPES, Concept, GraphError, OntologyGraph
from mcbio.data.ontobook.sources import load_ontology
from mcbio.data.ontobook.walks import Walk, generate_walks, random_walk, roulette

__all__ = [
    "EDGE_TYPES",
    "Concept",
    "GraphError",
    "OntologyGraph",
    "Walk",
    "generate_walks",
    "load_ontology",
    "random_walk",
    "roulette",
]
