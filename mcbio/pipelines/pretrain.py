"""Pretraining experiment as three stages: pretrain (+ HF export) -> evaluation array -> the run's table.

* ``pretrain``: one element (one task per GPU) runs every phase in one Composer fit,
  autoresuming from the run's checkpoints, then rank 0 exports ``<run>/hf`` with a
  :data:`~mcbio.pipelines.evaluate.RUN_MARKER` naming the run; done when that marker
  carries the run's config hash.
* ``evaluate``: one element per (task, seed) on the export, through the same planner as
  the evaluation launcher, into the same results store, named after the run.
* ``report``: the run's own table (``<run>/tables/results.tex``) from the store.

On Slurm the stages are arrays chained by ``afterok`` dependencies, submitted together
from the launcher; nothing waits inside a job for another job.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from mcbio.cluster.launcher import LaunchContext, element_name, run_dir_of, run_name
from mcbio.cluster.plan import Element, Plan, Stage, single_task, with_needs
from mcbio.config.checks import Problems, check_model_dir, check_path, check_tokenizer_dir
from mcbio.config.loader import config_hash, to_container
from mcbio.config.schema import PretrainRunConfig
from mcbio.files import json_marker_matches, write_json_atomic
from mcbio.pipelines.evaluate import RUN_MARKER, evaluation_elements, resolve_suite
from mcbio.results.records import ResultStore, RunRecord, git_commit

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- checks


def check_pretraining_inputs(cfg: PretrainRunConfig, problems: Problems) -> None:
    """Every path the pretraining element reads exists and is of the right kind."""
    if cfg.data.shards:
        shards = check_path(problems, "data.shards", cfg.data.shards, "dir")
        if shards is not None and not problems.pending(shards) and not (shards / "index.json").is_file():
            problems.add("data.shards", f"{shards} holds no packed shards (index.json missing; "
                                        "write them with the curation experiment)")
    elif cfg.data.corpus:
        check_path(problems, "data.corpus", cfg.data.corpus)
    if cfg.model.init_from:
        check_model_dir(problems, "model.init_from", cfg.model.init_from, tokenizer=not cfg.model.tokenizer)
    if cfg.model.tokenizer:
        path = check_path(problems, "model.tokenizer", cfg.model.tokenizer, "dir")
        if path is not None:
            check_tokenizer_dir(problems, "model.tokenizer", path)


# --------------------------------------------------------------------------- plan


def export_done(hf_dir: Path, run_hash: str) -> bool:
    return json_marker_matches(hf_dir / RUN_MARKER, config_hash=run_hash)


@dataclass(frozen=True)
class RunTableConfig:
    """The report element of a pretraining run: its records -> ``<run>/tables/results.tex``."""

    results_dir: str
    model: str
    out_path: str
    decimal_comma: bool


def pretraining_stages(cfg: PretrainRunConfig, problems: Problems, key_prefix: str = "", experiment: str | None = None,
                       record_tags: dict[str, str] | None = None) -> tuple[list, list, list, list]:
    """(pretrain, evaluate, report) elements and notes of one run; problems are collected, not raised.

    ``experiment`` / ``record_tags``: where the records go and what they carry (a grid's
    cells share the grid's records file, tagged with their cell).
    """
    check_pretraining_inputs(cfg, problems)
    run_dir = run_dir_of(cfg)
    name = run_name(cfg)
    hf_dir = run_dir / "hf"
    element_cfg = dataclasses.replace(cfg, out_dir=str(run_dir))
    run_hash = config_hash(cfg)
    pretrain, evaluate, report, notes = [], [], [], []
    if "pretrain" in cfg.stages:
        pretrain.append(Element(key=element_name(key_prefix + "pretrain", name),
                                entry="mcbio.pipelines.pretrain:pretrain_element", cfg=element_cfg,
                                done=lambda: export_done(hf_dir, run_hash),
                                describe=lambda r: f"exported {r.get('hf')}"))
    elif "evaluate" in cfg.stages and cfg.evaluation.enabled:
        check_model_dir(problems, "stages", str(hf_dir))
    if "evaluate" in cfg.stages and cfg.evaluation.enabled:
        specs, notes = resolve_suite(cfg.evaluation, cfg.paths.shared_data, problems, "evaluation.")
        evaluate = evaluation_elements({name: (str(hf_dir), "pretrained")}, specs, cfg.evaluation, cfg, run_dir,
                                       experiment, record_tags)
        if key_prefix:
            evaluate = [dataclasses.replace(e, key=key_prefix + e.key) for e in evaluate]
    if "report" in cfg.stages and cfg.report.enabled:
        table = run_dir / "tables" / "results.tex"
        store = ResultStore(Path(cfg.evaluation.results_dir).expanduser().resolve())
        table_cfg = RunTableConfig(str(store.root), name, str(table), cfg.report.decimal_comma)
        report.append(Element(key=element_name(key_prefix + "report", name), entry="mcbio.pipelines.pretrain:run_table",
                              cfg=table_cfg, done=lambda: table_is_fresh(table, store.records_dir / f"{experiment or name}.jsonl"),
                              describe=lambda r: str(r)))
    return pretrain, evaluate, report, notes


def table_is_fresh(table: Path, records_file: Path) -> bool:
    """The run's table exists and is newer than the records file the run writes to."""
    if not table.is_file():
        return False
    return not records_file.is_file() or table.stat().st_mtime >= records_file.stat().st_mtime


def stages_of(cfg: PretrainRunConfig, pretrain: list, evaluate: list, report: list) -> tuple[Stage, ...]:
    stages = []
    if pretrain:
        stages.append(Stage("pretrain", tuple(pretrain), cfg.resources))
    if evaluate:
        stages.append(Stage("evaluate", tuple(evaluate), with_needs(cfg.resources, cfg.evaluation.needs),
                            after=("pretrain",) if pretrain else ()))
    if report:
        stages.append(Stage("report", tuple(report), single_task(cfg.resources, timeout_min=10),
                            after=tuple(s.name for s in stages)))
    return tuple(stages)


def plan_pretraining(cfg: PretrainRunConfig, ctx: LaunchContext) -> Plan:
    problems = Problems()
    pretrain, evaluate, report, notes = pretraining_stages(cfg, problems)
    problems.raise_if_any(f"the run '{run_name(cfg)}'")
    return Plan(name=run_name(cfg), run_dir=run_dir_of(cfg), stages=stages_of(cfg, pretrain, evaluate, report),
                notes=tuple(notes))


# --------------------------------------------------------------------------- job bodies


def pretrain_element(cfg: PretrainRunConfig) -> dict:
    """Train every phase, export ``hf/`` (rank 0) and record the run's compute in the store."""
    from composer.utils import dist

    from mcbio.model.export import export_hf
    from mcbio.tracking import composer_wandb_logger
    from mcbio.train.pretrain import pretrain

    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = run_name(cfg)
    started = time.time()
    logger = composer_wandb_logger(cfg.tracking, name, out_dir, "pretrain", to_container(cfg))
    res = cfg.resources
    hf_model, tokenizer, _, resumed_at = pretrain(cfg.model, cfg.data, cfg.train, out_dir, run_name=name,
                                                  expected_world_size=res.nodes * res.gpus_per_node,
                                                  loggers=[logger] if logger else [])
    if dist.get_global_rank() != 0:
        return {"rank": dist.get_global_rank()}
    hf_dir = out_dir / "hf"
    export_hf(hf_model, tokenizer, hf_dir)
    run_hash = config_hash(cfg)
    wall_s = time.time() - started
    gpus = res.nodes * res.gpus_per_node
    ResultStore(Path(cfg.evaluation.results_dir).expanduser().resolve()).add_run(RunRecord(
        model=name, config_hash=run_hash, gpu_hours=gpus * wall_s / 3600.0, num_gpus=gpus, wall_s=round(wall_s, 3),
        gpu_type=os.environ.get("MCBIO_GPU_TYPE", "H100" if gpus else "cpu"), commit=git_commit(),
        extra={"cpu_hours": round(res.nodes * res.tasks_per_node * res.cpus_per_task * wall_s / 3600.0, 4),
               "resumed_at_batch": resumed_at, **run_inputs(cfg, out_dir)}), name)
    write_json_atomic(hf_dir / RUN_MARKER, {"run": name, "config_hash": run_hash, "commit": git_commit()})
    return {"hf": str(hf_dir), "config_hash": run_hash, "wall_s": round(wall_s, 1)}


def run_inputs(cfg: PretrainRunConfig, out_dir: Path) -> dict:
    """What the run read, by content hash (the checkpoint it started from, the shards), and the
    tokens of each phase: a study checks with these that its arms share a base and a corpus."""
    from mcbio.files import sha256_file
    from mcbio.train.phases import plan_phases
    from mcbio.train.pretrain import packed_data_dir

    tokens_per_batch = cfg.train.global_batch_size * cfg.data.seq_len
    out: dict = {"tokens_per_phase": {p.name: p.num_batches * tokens_per_batch
                                      for p in plan_phases(cfg.train.phases, tokens_per_batch)}}
    if cfg.model.init_from:
        weights = sorted(Path(cfg.model.init_from).glob("*.safetensors")) or sorted(Path(cfg.model.init_from).glob("*.bin"))
        out["init_from"] = {"path": cfg.model.init_from, "sha256": {w.name: sha256_file(w) for w in weights}}
    shards = packed_data_dir(cfg.data, out_dir)
    if (shards / "index.json").is_file():
        out["shards"] = {"path": str(shards), "index_sha256": sha256_file(shards / "index.json")}
    return out


def run_table(cfg: RunTableConfig) -> str:
    """The run's records (primary and secondary metrics, mean over seeds) as a LaTeX table."""
    from mcbio.results.latex import results_table, write_table

    records = [r for r in ResultStore(cfg.results_dir).records() if r.model == cfg.model]
    table = results_table(records, caption=f"Fine-tuning results of {cfg.model} (test set, mean over seeds)",
                          label=f"tab:{cfg.model}", decimal_comma=cfg.decimal_comma)
    return str(write_table(table, cfg.out_path))
