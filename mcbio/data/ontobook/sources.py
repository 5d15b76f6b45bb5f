"""Config -> graph: one entry point over the CIM-10 CSV, ATC JSON and RDF loaders."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Tuple

from mcbio.data.ontobook.atc import load_atc_json
from mcbio.data.ontobook.cim10 import load_cim10_csv
from mcbio.data.ontobook.graph import GraphError, OntologyGraph
from mcbio.data.ontobook.rdf import load_rdf

log = logging.getLogger(__name__)


def resolve_source_path(name: str, path: Optional[str], shared_data: Optional[str]) -> Path:
    if not path:
        raise GraphError(
            f"ontologies.{name}.path is not set: give the {name} file (e.g. the RDF published by the "
            f"French health agency) or set ontologies.{name}.enabled=false"
        )
    p = Path(path).expanduser()
    if not p.is_absolute():
        if not shared_data:
            raise GraphError(
                f"ontologies.{name}.path={path!r} is relative but paths.shared_data is not set "
                "(set MCBIO_DATA or paths.shared_data, or give an absolute path)"
            )
        p = Path(shared_data).expanduser() / p
    if not p.is_file():
        raise GraphError(f"ontologies.{name}.path: file not found: {p}")
    return p


def load_ontology(name: str, cfg, shared_data: Optional[str] = None) -> Tuple[OntologyGraph, dict]:
    """Graph of one configured source (``cfg``: an ``OntologySourceConfig``) and its load stats."""
    path = resolve_source_path(name, cfg.path, shared_data)
    if cfg.format == "cim10_csv":
        graph, stats = load_cim10_csv(path, cfg.chapters_table, cfg.blocks_table, cfg.max_range_expansion, name=name)
    elif cfg.format == "atc_json":
        graph, stats = load_atc_json(path, cfg.groups_table, name=name)
    elif cfg.format == "rdf":
        graph, stats = load_rdf(path, cfg.rdf, name=name)
    else:
        raise GraphError(f"ontologies.{name}.format: unknown format {cfg.format!r}")
    stats = {**graph.summary(), **stats, "path": str(path)}
    log.info("%s: %d concepts, edges %s", name, len(graph), stats["edges"])
    return graph, stats
