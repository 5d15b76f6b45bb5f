"""OntoBook experiment: ontology walks -> LLM rephrasing -> verified documents + statistics.

The launched job plans one shard per (ontology, shard index), runs the shards as a job
array (``shard_jobs=array``, one element each) or in this job (``inline``), then merges
them. Finished shards are skipped, so a rerun or a requeue resumes.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Dict, List, Tuple

from mcbio.cluster import submit_array
from mcbio.config.loader import to_yaml
from mcbio.config.ontobook import OntobookRunConfig
from mcbio.data.ontobook.build import merge_shards, run_shard, shard_paths
from mcbio.data.ontobook.sources import load_ontology, resolve_source_path
from mcbio.llm import build_backend

log = logging.getLogger(__name__)


def shard_plan(cfg: OntobookRunConfig) -> Dict[str, int]:
    return {name: o.shards for name, o in cfg.ontologies.items() if o.enabled}


def run_ontobook_shards(cfg: OntobookRunConfig, shards: List[Tuple[str, int]]) -> List[dict]:
    """Run the given (ontology, index) shards here, loading each graph and the backend once."""
    out_dir = Path(cfg.out_dir)
    backend = None
    stats, graphs = [], {}
    for name, index in shards:
        done = shard_paths(out_dir, name, index)[1]
        if done.is_file():
            stats.append(json.loads(done.read_text(encoding="utf-8")))
            continue
        if name not in graphs:
            graphs[name], load_stats = load_ontology(name, cfg.ontologies[name], cfg.paths.shared_data)
            log.info("%s graph: %s", name, json.dumps(load_stats, ensure_ascii=False))
        backend = backend or build_backend(cfg.rephrase.llm)
        stats.append(run_shard(name, graphs[name], cfg.ontologies[name], cfg.walk, cfg.rephrase, backend,
                               out_dir, index))
    return stats


def run_ontobook_shard(cfg: OntobookRunConfig) -> dict:
    """Job-array element: the one shard named by ``shard_ontology`` / ``shard_index``."""
    if cfg.shard_ontology is None or cfg.shard_index is None:
        raise ValueError("run_ontobook_shard needs 'shard_ontology' and 'shard_index' (set by run_ontobook)")
    return run_ontobook_shards(cfg, [(cfg.shard_ontology, cfg.shard_index)])[0]


def run_ontobook(cfg: OntobookRunConfig) -> dict:
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(to_yaml(cfg), encoding="utf-8")
    plan = shard_plan(cfg)
    if cfg.paths.shared_data:
        # Array elements may start elsewhere: give them an absolute data root.
        cfg.paths.shared_data = str(Path(cfg.paths.shared_data).expanduser().resolve())
    # Fail before submitting anything when a source file is missing.
    for name in plan:
        resolve_source_path(name, cfg.ontologies[name].path, cfg.paths.shared_data)
    todo = [(n, i) for n, k in plan.items() for i in range(k) if not shard_paths(out_dir, n, i)[1].is_file()]
    log.info("ontobook: %d shards planned, %d to run (%s)", sum(plan.values()), len(todo), cfg.shard_jobs)
    if todo and cfg.shard_jobs == "inline":
        run_ontobook_shards(cfg, todo)
    elif todo:
        shard_cfgs = []
        for name, index in todo:
            sub = copy.deepcopy(cfg)
            sub.shard_ontology, sub.shard_index = name, index
            for key in ("gpus_per_node", "cpus_per_task", "mem_gb", "timeout_min"):
                setattr(sub.resources, key, getattr(cfg.shard_job, key))
            shard_cfgs.append(sub)
        jobs = submit_array(run_ontobook_shard, shard_cfgs, out_dir / "submitit-shards", f"{cfg.name}-shard")
        log.info("ontobook: submitted %d shard jobs (%s)", len(jobs), jobs[0].job_id if jobs else "-")
        failed = []
        for (name, index), job in zip(todo, jobs):
            try:
                job.result()
            except Exception as err:  # a failed element: report all of them, keep finished shards
                failed.append(f"{name}-{index} (job {job.job_id}): {str(err).strip().splitlines()[-1]}")
        if failed:
            raise RuntimeError("ontobook shard jobs failed (finished shards are kept; rerun to resume):\n  "
                               + "\n  ".join(failed))
    summary = merge_shards(out_dir, plan, cfg.output.tokenizer)
    log.info("ontobook: %s", json.dumps(summary["ontologies"], ensure_ascii=False))
    return {"out_dir": str(out_dir), **summary}
