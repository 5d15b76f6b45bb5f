"""OntoBook experiment: ontology walks -> LLM rephrasing -> verified documents + statistics.

Two stages of the one launcher: ``shards``, one element per (ontology, shard index) that
loads its graph, walks and rephrases (its GPU need is ``shard_needs``), done when the
shard's statistics file exists; then ``merge``, one CPU element that merges the shards
into the documents file and the statistics.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

from mcbio.cluster.launcher import LaunchContext, element_name, run_dir_of, run_name
from mcbio.cluster.plan import Element, Plan, Stage, single_task, with_needs
from mcbio.config.checks import Problems, check_llm, check_output_dirs
from mcbio.config.ontobook import OntobookRunConfig
from mcbio.data.ontobook.build import STATS_DIR, shard_paths
from mcbio.data.ontobook.sources import resolve_source_path

log = logging.getLogger(__name__)


def shard_plan(cfg: OntobookRunConfig) -> Dict[str, int]:
    return {name: o.shards for name, o in cfg.ontologies.items() if o.enabled}


def run_ontobook_shards(cfg: OntobookRunConfig, shards: List[Tuple[str, int]]) -> List[dict]:
    """Run the given (ontology, index) shards here, loading each graph and the backend once."""
    from mcbio.data.ontobook.sources import load_ontology
    from mcbio.llm import build_backend
    from mcbio.data.ontobook.build import run_shard

    out_dir = Path(cfg.out_dir)
    backend = None
    stats, graphs = [], {}
    try:
        for name, index in shards:
            done = shard_paths(out_dir, name, index)[1]
            if done.is_file():
                stats.append(json.loads(done.read_text(encoding="utf-8")))
                continue
            if name not in graphs:
                graphs[name], load_stats = load_ontology(name, cfg.ontologies[name], cfg.paths.shared_data)
                log.info("%s graph: %s", name, json.dumps(load_stats, ensure_ascii=False))
            backend = backend or build_backend(cfg.rephrase.llm, log_dir=out_dir / "llm_logs")
            stats.append(run_shard(name, graphs[name], cfg.ontologies[name], cfg.walk, cfg.rephrase, backend,
                                   out_dir, index))
    finally:
        if backend is not None:  # a server engine stops with the element
            backend.close()
    return stats


@dataclass(frozen=True)
class OntobookShard:
    cfg: OntobookRunConfig
    ontology: str
    index: int


def run_ontobook_shard(job: OntobookShard) -> dict:
    """Job element: the one shard ``(ontology, index)``."""
    return run_ontobook_shards(job.cfg, [(job.ontology, job.index)])[0]


def merge_ontobook(cfg: OntobookRunConfig) -> dict:
    """Job element: every shard -> the documents file and per-ontology statistics."""
    from mcbio.data.ontobook.build import merge_shards

    summary = merge_shards(Path(cfg.out_dir), shard_plan(cfg), cfg.output.tokenizer)
    log.info("ontobook: %s", json.dumps(summary["ontologies"], ensure_ascii=False))
    return {"out_dir": cfg.out_dir, **summary}


def plan_ontobook(cfg: OntobookRunConfig, ctx: LaunchContext, problems: Problems | None = None) -> Plan:
    """The plan; its launch checks raise here, or go into ``problems`` when given (a study collects them)."""
    own = problems is None
    problems = Problems(produced=ctx.produced) if own else problems
    plan = shard_plan(cfg)
    shared = str(Path(cfg.paths.shared_data).expanduser().resolve()) if cfg.paths.shared_data else None
    for name in plan:
        with problems.collect(f"ontologies.{name}.path"):
            resolve_source_path(name, cfg.ontologies[name].path, shared)
    check_llm(problems, "rephrase.llm", cfg.rephrase.llm)
    check_output_dirs(problems, cfg, run_dir_of(cfg))
    if own:
        problems.raise_if_any(f"the OntoBook run '{cfg.name}'")
    run_dir = run_dir_of(cfg)
    # Elements may start in another folder: they get the absolute data root.
    element_cfg = dataclasses.replace(cfg, out_dir=str(run_dir), paths=dataclasses.replace(cfg.paths, shared_data=shared))
    shards = tuple(Element(key=element_name("shard", f"{name}-{i:04d}"), entry="mcbio.pipelines.ontobook:run_ontobook_shard",
                           cfg=OntobookShard(element_cfg, name, i),
                           done=lambda f=shard_paths(run_dir, name, i)[1]: f.is_file(),
                           describe=lambda r: f"{r.get('kept', '?')} documents kept")
                   for name, k in plan.items() for i in range(k))
    stats_files = [shard_paths(run_dir, name, i)[1] for name, k in plan.items() for i in range(k)]
    merge = Element(key=element_name("merge", cfg.name), entry="mcbio.pipelines.ontobook:merge_ontobook", cfg=element_cfg,
                    done=lambda: _merged_fresh(run_dir / STATS_DIR / "summary.json", stats_files),
                    describe=lambda r: json.dumps(r.get("ontologies", {}), ensure_ascii=False)[:200])
    return Plan(name=run_name(cfg), run_dir=run_dir, stages=(
        Stage("shards", shards, with_needs(cfg.resources, cfg.shard_needs)),
        Stage("merge", (merge,), single_task(cfg.resources), after=("shards",)),
    ))


def _merged_fresh(summary: Path, stats_files: List[Path]) -> bool:
    """The merge summary (written last) exists and is newer than every shard it merges."""
    if not summary.is_file() or not all(f.is_file() for f in stats_files):
        return False
    return summary.stat().st_mtime >= max((f.stat().st_mtime for f in stats_files), default=0.0)
