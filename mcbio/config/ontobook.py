"""Typed config of the OntoBook synthetic source (ontology walks -> LLM prose -> verified documents).

Defaults are the paper's volumes (~1.3 M walks: CIM-10 400k, CCAM 760k, ATC 140k), walks
of 8-20 steps, and the 300-character cut. Edge-type names are those of
``mcbio.data.ontobook.graph``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from mcbio.config.schema import JobNeeds, RunConfig, choice
from mcbio.llm import LLMConfig

SKOS = "http://www.w3.org/2004/02/skos/core#"
RDFS = "http://www.w3.org/2000/01/rdf-schema#"
OWL = "http://www.w3.org/2002/07/owl#"


@dataclass
class WalkTypeConfig:
    # Share of the ontology's walks of this type (shares are normalised over the types).
    share: float = 1.0
    # Roulette weights per edge type; types absent or at 0 are never taken.
    edge_weights: Dict[str, float] = field(default_factory=dict)
    # Node kinds a walk may start from (empty = any kind).
    start_kinds: List[str] = field(default_factory=list)
    # The start node must have at least one of these edge types (empty = no condition).
    start_requires_any: List[str] = field(default_factory=list)


@dataclass
class RdfMappingConfig:
    """Which RDF predicates mean what. Defaults read SKOS schemes and OWL class trees."""

    # rdflib format name; None = guessed from the file extension.
    format: Optional[str] = None
    concept_types: List[str] = field(default_factory=lambda: [SKOS + "Concept", OWL + "Class"])
    # Predicates holding the code; None/empty = the IRI's local name.
    code: List[str] = field(default_factory=lambda: [SKOS + "notation"])
    label: List[str] = field(default_factory=lambda: [SKOS + "prefLabel", RDFS + "label"])
    language: str = "fr"
    broader: List[str] = field(default_factory=lambda: [SKOS + "broader", RDFS + "subClassOf"])
    narrower: List[str] = field(default_factory=lambda: [SKOS + "narrower"])
    # Edge type -> predicate IRIs (e.g. excludes: [<publisher's exclusion property>]).
    relations: Dict[str, List[str]] = field(default_factory=dict)
    # Regex of a code as written in prose (CCAM: 4 letters + 3 digits).
    code_pattern: str = r"[A-Z]{4}\d{3}"


@dataclass
class OntologySourceConfig:
    enabled: bool = True
    format: str = choice("cim10_csv", "cim10_csv", "atc_json", "rdf")
    # File path; relative paths are read under ``paths.shared_data``.
    path: Optional[str] = None
    # Total walks kept for rephrasing, over all shards (paper volumes by default).
    walks: int = 100_000
    # Job-array elements for this ontology (walks are split evenly).
    shards: int = 10
    # CIM-10 CSV: chapter table (None = shipped one), optional block table, and the largest
    # code range in a label reference that is expanded into edges to every code it holds.
    chapters_table: Optional[str] = None
    blocks_table: Optional[str] = None
    max_range_expansion: int = 5
    # ATC JSON: level-1 group labels (None = shipped table).
    groups_table: Optional[str] = None
    rdf: RdfMappingConfig = field(default_factory=RdfMappingConfig)
    walk_types: Dict[str, WalkTypeConfig] = field(default_factory=dict)


def _cim10_walk_types() -> Dict[str, WalkTypeConfig]:
    return {
        "hierarchy": WalkTypeConfig(
            share=0.45, start_kinds=["chapter", "block", "category"],
            edge_weights={"narrower": 0.5, "sibling": 0.25, "broader": 0.1,
                          "has_manifestation": 0.05, "caused_by": 0.05, "manifestation_of": 0.025, "causes": 0.025}),
        "lateral": WalkTypeConfig(
            share=0.4, start_kinds=["category", "subcode"],
            edge_weights={"sibling": 0.45, "broader": 0.2, "narrower": 0.2,
                          "has_manifestation": 0.05, "caused_by": 0.05, "manifestation_of": 0.025, "causes": 0.025}),
        "clinical": WalkTypeConfig(
            share=0.15, start_requires_any=["has_manifestation", "manifestation_of", "caused_by", "causes"],
            edge_weights={"has_manifestation": 0.2, "manifestation_of": 0.2, "caused_by": 0.2, "causes": 0.2,
                          "broader": 0.1, "narrower": 0.05, "sibling": 0.05}),
    }


def _ccam_walk_types() -> Dict[str, WalkTypeConfig]:
    return {
        "hierarchy": WalkTypeConfig(share=0.5, edge_weights={"narrower": 0.5, "sibling": 0.3, "broader": 0.2}),
        "lateral": WalkTypeConfig(share=0.5, edge_weights={"sibling": 0.5, "broader": 0.25, "narrower": 0.25}),
    }


def _atc_walk_types() -> Dict[str, WalkTypeConfig]:
    return {
        "hierarchy": WalkTypeConfig(
            share=0.4, start_kinds=["atc1", "atc2", "atc3"],
            edge_weights={"narrower": 0.5, "sibling": 0.25, "broader": 0.1, "has_drug": 0.15}),
        "substances": WalkTypeConfig(
            share=0.4, start_kinds=["atc4", "atc5"],
            edge_weights={"sibling": 0.4, "broader": 0.2, "narrower": 0.15, "has_drug": 0.15, "drug_of": 0.1}),
        "drugs": WalkTypeConfig(
            share=0.2, start_kinds=["drug"],
            edge_weights={"drug_of": 0.35, "has_drug": 0.25, "sibling": 0.2, "broader": 0.2}),
    }


def _paper_ontologies() -> Dict[str, OntologySourceConfig]:
    return {
        "cim10": OntologySourceConfig(format="cim10_csv", path="ontologies/edsnlp_resources/cim10.csv.gz",
                                      walks=400_000, shards=20, walk_types=_cim10_walk_types()),
        # CCAM is published as RDF by the French health agency (SMT); no copy is available
        # here, so ``path`` must be set (or the source disabled) to run it.
        "ccam": OntologySourceConfig(format="rdf", path=None, walks=760_000, shards=38,
                                     walk_types=_ccam_walk_types()),
        "atc": OntologySourceConfig(format="atc_json", path="ontologies/edsnlp_resources/drugs.json",
                                    walks=140_000, shards=7, walk_types=_atc_walk_types()),
    }


@dataclass
class WalkConfig:
    # Steps are edges taken: a walk of n steps names n + 1 concepts.
    min_steps: int = 8
    max_steps: int = 20
    # Walks whose verbalised text is shorter than this are dropped.
    min_chars: int = 300
    seed: int = 42
    # When the walk's last node has nowhere new to go, continue from the latest visited node
    # that has (the text then returns to it); off = the walk stops there.
    backtrack: bool = True
    # Give up a shard after this many attempts per walk asked (duplicates, short walks).
    max_attempts_per_walk: int = 20


@dataclass
class RephraseConfig:
    # backend=rules verbalises walks with fixed French templates: NOT an LLM.
    llm: LLMConfig = field(default_factory=LLMConfig)
    prompt: str = "ontobook_rephrase"
    # Prompts sent to the backend per call (progress and memory granularity).
    chunk_size: int = 512
    # Also require the answer's relation list to match the walk's relations exactly.
    verify_relations: bool = True


@dataclass
class OntobookOutputConfig:
    # Local tokenizer folder used to count tokens in the statistics; None = whitespace words.
    tokenizer: Optional[str] = None


@dataclass
class OntobookSettings:
    """What OntoBook generates, without where and how it is scheduled (a study nests these)."""

    # What one shard element (one ontology x shard, it runs the LLM) needs over ``resources``.
    shard_needs: JobNeeds = field(default_factory=lambda: JobNeeds(gpus_per_node=1, tasks_per_node=1,
                                                                   cpus_per_task=8, timeout_min=240))
    ontologies: Dict[str, OntologySourceConfig] = field(default_factory=_paper_ontologies)
    walk: WalkConfig = field(default_factory=WalkConfig)
    rephrase: RephraseConfig = field(default_factory=RephraseConfig)
    output: OntobookOutputConfig = field(default_factory=OntobookOutputConfig)

    def check(self) -> None:
        from mcbio.config.loader import ConfigError
        from mcbio.data.ontobook.graph import EDGE_TYPES

        w = self.walk
        if not 1 <= w.min_steps <= w.max_steps:
            raise ConfigError("'walk.min_steps' must be >= 1 and <= 'walk.max_steps'")
        if not any(o.enabled for o in self.ontologies.values()):
            raise ConfigError("'ontologies': every source is disabled")
        for name, onto in self.ontologies.items():
            key = f"ontologies.{name}"
            if onto.walks < 0 or onto.shards < 1:
                raise ConfigError(f"'{key}.walks' must be >= 0 and '{key}.shards' >= 1")
            if onto.enabled and not sum(wt.share for wt in onto.walk_types.values()) > 0:
                raise ConfigError(f"'{key}.walk_types' is empty or all its shares are 0")
            for wt_name, wt in onto.walk_types.items():
                wkey = f"{key}.walk_types.{wt_name}"
                if wt.share < 0:
                    raise ConfigError(f"'{wkey}.share' must be >= 0")
                for etype, weight in {**wt.edge_weights, **{t: 1 for t in wt.start_requires_any}}.items():
                    if etype not in EDGE_TYPES:
                        raise ConfigError(f"'{wkey}': unknown edge type {etype!r}. Choose from: {', '.join(EDGE_TYPES)}")
                    if weight < 0:
                        raise ConfigError(f"'{wkey}.edge_weights.{etype}' must be >= 0")
                if not any(v > 0 for v in wt.edge_weights.values()):
                    raise ConfigError(f"'{wkey}.edge_weights' has no positive weight")


@dataclass
class OntobookRunConfig(OntobookSettings, RunConfig):
    name: str = "ontobook"
