"""Pretraining experiment as three stages: pretrain (+ HF export) -> evaluation array -> the run's table.

* ``pretrain``: one element (one task per GPU) runs every phase in one Composer fit,
  autoresuming from the run's checkpoints, then rank 0 exports ``<run>/hf`` with a
  :data:`~mcbio.pipelines.evaluate.RUN_MARKER` naming the run; done when that marker
  carries the run's config hash and the fingerprint of the inputs it trained on (see
  :func:`input_fingerprint`) matches the inputs now.
* ``evaluate``: one element per (task, seed) on the export, through the same planner as
  the evaluation launcher, into the same results store, named after the run; not done
  while the pretraining element is not.
* ``report``: the run's own table (``<run>/tables/results.tex``) from the store.

On Slurm the stages are arrays chained by ``afterok`` dependencies, submitted together
from the launcher; nothing waits inside a job for another job.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mcbio.cluster.launcher import LaunchContext, element_name, run_dir_of, run_name
from mcbio.cluster.plan import Element, Plan, Stage, single_task, with_needs
from mcbio.config.checks import (Problems, check_model_dir, check_output_dirs, check_path, check_tokenizer_dir,
                                 check_utf8_corpus)
from mcbio.config.loader import stable_hash, to_container
from mcbio.config.schema import PretrainRunConfig
from mcbio.files import sha256_file, write_json_atomic
from mcbio.model.fingerprint import (
    combine,
    content_digest,
    model_fingerprint,
    model_fingerprint_if_present,
    tokenizer_fingerprint,
    tree_files,
)
from mcbio.pipelines.evaluate import RUN_MARKER, evaluation_elements, resolve_suite
from mcbio.results.records import ResultStore, RunRecord, git_commit, one_fingerprint_per_model
from mcbio.train.attempts import ATTEMPTS, AttemptClock

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
        check_utf8_corpus(problems, "data.corpus", cfg.data.corpus)
    if cfg.model.init_from:
        check_model_dir(problems, "model.init_from", cfg.model.init_from, tokenizer=not cfg.model.tokenizer)
    if cfg.model.tokenizer:
        path = check_path(problems, "model.tokenizer", cfg.model.tokenizer, "dir")
        if path is not None:
            check_tokenizer_dir(problems, "model.tokenizer", path)


# --------------------------------------------------------------------------- plan


def input_fingerprint(cfg: PretrainRunConfig, known: dict | None = None) -> dict:
    """What the run trains on, by content: ``{"fingerprint": ..., <part>: ...}``.

    Parts: ``shards_index``, the SHA-256 of ``data.shards/index.json`` (the manifest the
    curation writes last); else ``corpus``, the fingerprint of every file under
    ``data.corpus`` (the sample corpus when unset), with ``corpus_files`` (each file's
    size, mtime, ctime and SHA-256); ``init_from``, the model fingerprint of the checkpoint
    it starts from; ``tokenizer``, that of ``model.tokenizer``'s files.

    The corpus is hashed in full, not sampled: a corpus run is small (``general_fr`` is
    2 MB, hashed in milliseconds), paper-scale data comes as shards (one small manifest),
    and ``known`` (the ``corpus_files`` of the export's marker) spares re-reading files
    whose size, mtime and ctime are unchanged, so a plan only stats the files. Raises
    FileNotFoundError naming the key when an input is missing (not produced yet).
    """
    parts: dict = {}
    if cfg.data.shards:
        index = Path(cfg.data.shards) / "index.json"
        if not index.is_file():
            raise FileNotFoundError(f"data.shards: {index} not found")
        parts["shards_index"] = sha256_file(index)
    else:
        from mcbio.data.corpus import SAMPLE_CORPUS

        root = Path(cfg.data.corpus) if cfg.data.corpus else SAMPLE_CORPUS
        if not root.exists():
            raise FileNotFoundError(f"data.corpus: {root} not found")
        files = content_digest(tree_files(root), (known or {}).get("corpus_files"))
        parts["corpus"], parts["corpus_files"] = combine(files), files
    if cfg.model.init_from:
        parts["init_from"] = model_fingerprint(cfg.model.init_from)
    if cfg.model.tokenizer:
        parts["tokenizer"] = tokenizer_fingerprint(cfg.model.tokenizer)
    summary = json.dumps({k: v for k, v in parts.items() if k != "corpus_files"}, sort_keys=True)
    return {"fingerprint": hashlib.sha256(summary.encode()).hexdigest(), **parts}


# The run's input folders: identified by their content (input_fingerprint), not by where they are.
INPUT_PATH_KEYS = (("data", "corpus"), ("data", "shards"), ("model", "init_from"), ("model", "tokenizer"))


def training_hash(cfg: PretrainRunConfig) -> str:
    """What the pretraining element computes: its model, data and training settings. The run's
    evaluation, report and stage list do not change the weights: changing them (a study sizing its
    fine-tuning) re-plans the evaluation, never the pretraining. Nor do the paths of its inputs
    (:data:`INPUT_PATH_KEYS`), which :func:`input_fingerprint` identifies by content: the same corpus
    reached as ``../shared/data`` or through ``MCBIO_DATA``, or in a clone elsewhere, is the same run."""
    settings = {key: to_container(getattr(cfg, key)) for key in ("model", "data", "train")}
    for section, key in INPUT_PATH_KEYS:
        settings[section].pop(key)
    return stable_hash(settings)


def write_run_marker(hf_dir: Path, cfg: PretrainRunConfig, inputs: dict) -> Path:
    """The export's :data:`RUN_MARKER`, written last: the run's name (the records' model name), its
    config hash and the inputs it trained on (:func:`input_fingerprint`)."""
    return write_json_atomic(hf_dir / RUN_MARKER, {"run": run_name(cfg), "config_hash": training_hash(cfg),
                                                   "commit": git_commit(), "inputs": inputs})


def export_done(cfg: PretrainRunConfig, hf_dir: Path) -> bool:
    """The export's marker carries the run's config hash and the fingerprint of the inputs as they are now."""
    try:
        marker = json.loads((hf_dir / RUN_MARKER).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    if not isinstance(marker, dict) or marker.get("config_hash") != training_hash(cfg):
        return False
    recorded = marker.get("inputs")
    if not isinstance(recorded, dict):  # exported before inputs were fingerprinted
        return False
    try:
        return input_fingerprint(cfg, recorded)["fingerprint"] == recorded.get("fingerprint")
    except FileNotFoundError:
        return False


def wait_for_export(elements: list[Element], cfg: PretrainRunConfig, hf_dir: Path) -> list[Element]:
    """``elements`` that read ``hf_dir`` (its evaluations, or runs that start from it) are done only
    once the run ``cfg`` that exports it is: the export on disk may be the one about to be replaced."""
    return [dataclasses.replace(e, done=lambda e=e: export_done(cfg, hf_dir) and e.done()) for e in elements]


# Written in the run directory when training starts: the inputs its checkpoints, packed data and tokenizer come from.
STATE_INPUTS = "run_inputs.json"
# What the run builds from its inputs (the run's own packing is data/packed-<seq_len>); set aside when they change.
RUN_STATE = ("checkpoints", "data/packed-*", "tokenizer", "hf", ATTEMPTS)


def set_aside_stale_state(out_dir: Path, inputs: dict, protected: tuple[str | Path, ...] = ()) -> Path | None:
    """Move the run's checkpoints, packed data, tokenizer and export to ``stale/<time>/`` when they were
    built from other inputs (:data:`STATE_INPUTS`), so the run trains again from scratch instead of
    resuming; return that folder (None when nothing moved). Then record ``inputs`` as the current ones.

    A folder holding one of the ``protected`` paths (the run's inputs: a grid cell's corpus lives
    in its run directory) is never moved. A run directory without the record (started before
    inputs were recorded) is kept as it is.
    """
    record = out_dir / STATE_INPUTS
    try:
        before = json.loads(record.read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, json.JSONDecodeError, AttributeError):
        before = None
    guarded = [Path(p).resolve() for p in protected]
    present = [p for pattern in RUN_STATE for p in sorted(out_dir.glob(pattern))
               if not any(g == p.resolve() or p.resolve() in g.parents for g in guarded)]
    moved = None
    if before is not None and before != inputs["fingerprint"] and present:
        (out_dir / "stale").mkdir(exist_ok=True)
        moved = Path(tempfile.mkdtemp(dir=out_dir / "stale", prefix=time.strftime("%Y%m%d-%H%M%S-")))
        for path in present:
            target = moved / path.relative_to(out_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            path.rename(target)
        log.warning("the run's inputs changed since its checkpoints were written: %s moved to %s, training "
                    "starts again", ", ".join(str(p.relative_to(out_dir)) for p in present), moved)
    write_json_atomic(record, {k: v for k, v in inputs.items() if k != "corpus_files"})
    return moved


@dataclass(frozen=True)
class RunTableConfig:
    """The report element of a pretraining run: its records -> ``<run>/tables/results.tex``."""

    results_dir: str
    model: str
    out_path: str
    decimal_comma: bool
    # The run's export: the table shows the records of these weights only.
    model_path: str


def pretraining_stages(cfg: PretrainRunConfig, problems: Problems, key_prefix: str = "", experiment: str | None = None,
                       record_tags: dict[str, str] | None = None) -> tuple[list, list, list, list]:
    """(pretrain, evaluate, report) elements and notes of one run; problems are collected, not raised.

    ``experiment`` / ``record_tags``: where the records go and what they carry (a grid's
    cells share the grid's records file, tagged with their cell).
    """
    check_pretraining_inputs(cfg, problems)
    run_dir = run_dir_of(cfg)
    check_output_dirs(problems, cfg, run_dir)
    name = run_name(cfg)
    hf_dir = run_dir / "hf"
    element_cfg = dataclasses.replace(cfg, out_dir=str(run_dir))
    pretrain, evaluate, report, notes = [], [], [], []
    if "pretrain" in cfg.stages:
        pretrain.append(Element(key=element_name(key_prefix + "pretrain", name),
                                entry="mcbio.pipelines.pretrain:pretrain_element", cfg=element_cfg,
                                done=lambda: export_done(cfg, hf_dir),
                                describe=describe_pretraining))
    elif "evaluate" in cfg.stages and cfg.evaluation.enabled:
        check_model_dir(problems, "stages", str(hf_dir))
    if "evaluate" in cfg.stages and cfg.evaluation.enabled:
        specs, notes = resolve_suite(cfg.evaluation, cfg.paths.shared_data, problems, "evaluation.")
        evaluate = evaluation_elements({name: (str(hf_dir), "pretrained")}, specs, cfg.evaluation, cfg, run_dir,
                                       experiment, record_tags)
        if key_prefix:
            evaluate = [dataclasses.replace(e, key=key_prefix + e.key) for e in evaluate]
        if pretrain:
            evaluate = wait_for_export(evaluate, cfg, hf_dir)
    if "report" in cfg.stages and cfg.report.enabled:
        table = run_dir / "tables" / "results.tex"
        store = ResultStore(Path(cfg.evaluation.results_dir).expanduser().resolve())
        table_cfg = RunTableConfig(str(store.root), name, str(table), cfg.report.decimal_comma, str(hf_dir))
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
    """Train every phase, export ``hf/`` (rank 0) and record the run's compute in the store.

    The run's state built from other inputs is set aside first (:func:`set_aside_stale_state`).
    """
    from composer.utils import dist

    from mcbio.model.export import export_hf
    from mcbio.tracking import composer_wandb_logger
    from mcbio.train.pretrain import PROCESS_GROUP_TIMEOUT_S, pretrain, rank_zero_first, training_device

    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = run_name(cfg)
    started = time.time()
    # The process group first (pretrain reuses it), so that the other ranks read the run's
    # checkpoints only after rank 0 has set stale ones aside.
    dist.initialize_dist(training_device(), timeout=PROCESS_GROUP_TIMEOUT_S)
    inputs: dict = {}
    clock = None
    with rank_zero_first():
        if dist.get_global_rank() == 0:
            inputs = input_fingerprint(cfg)
            set_aside_stale_state(out_dir, inputs, tuple(p for p in (getattr(getattr(cfg, section), key)
                                                                    for section, key in INPUT_PATH_KEYS) if p))
            clock = AttemptClock(out_dir).start()
    logger = composer_wandb_logger(cfg.tracking, name, out_dir, "pretrain", to_container(cfg))
    res = cfg.resources
    hf_model, tokenizer, _, resumed_at, repairs = pretrain(cfg.model, cfg.data, cfg.train, out_dir, run_name=name,
                                                  expected_world_size=res.nodes * res.gpus_per_node,
                                                  loggers=[logger] if logger else [])
    if dist.get_global_rank() != 0:
        return {"rank": dist.get_global_rank()}
    hf_dir = out_dir / "hf"
    export_hf(hf_model, tokenizer, hf_dir)
    run_hash = training_hash(cfg)
    # Every attempt since the last record: a requeued or killed attempt's time is compute spent too.
    wall_s, attempts = clock.unrecorded()
    clock.stop()
    gpus = res.nodes * res.gpus_per_node
    ResultStore(Path(cfg.evaluation.results_dir).expanduser().resolve()).add_run(RunRecord(
        model=name, config_hash=run_hash, gpu_hours=gpus * wall_s / 3600.0, num_gpus=gpus, wall_s=round(wall_s, 3),
        gpu_type=os.environ.get("MCBIO_GPU_TYPE", "H100" if gpus else "cpu"), commit=git_commit(),
        extra={"cpu_hours": round(res.nodes * res.tasks_per_node * res.cpus_per_task * wall_s / 3600.0, 4),
               "resumed_at_batch": resumed_at, "attempts": attempts,
               "attempt_wall_s": round(time.time() - started, 3), **run_inputs(cfg, out_dir)}), name)
    clock.mark_recorded()
    write_run_marker(hf_dir, cfg, inputs)
    return {"hf": str(hf_dir), "config_hash": run_hash, "wall_s": round(wall_s, 1), "attempts": attempts,
            "checkpoint_repairs": repairs}


def describe_pretraining(result: dict) -> str:
    """The launcher's line for a finished pretraining: the export, and any checkpoint set aside."""
    line = f"exported {result.get('hf')}"
    if result.get("attempts", 1) > 1:
        line += f" after {result['attempts']} attempts ({result.get('wall_s')} s in all)"
    repairs = result.get("checkpoint_repairs") or []
    return line + "".join(f"\n    WARNING: {r}" for r in repairs)


def run_inputs(cfg: PretrainRunConfig, out_dir: Path) -> dict:
    """What the run read, by content hash (the checkpoint it started from, the shards), and the
    tokens of each phase: a study checks with these that its arms share a base and a corpus."""
    from mcbio.train.phases import plan_phases
    from mcbio.train.pretrain import packed_data_dir

    tokens_per_batch = cfg.train.global_batch_size * cfg.data.seq_len
    out: dict = {"tokens_per_phase": {p.name: p.num_batches * tokens_per_batch
                                      for p in plan_phases(cfg.train.phases, tokens_per_batch)}}
    if cfg.model.init_from:
        weights = sorted(Path(cfg.model.init_from).glob("*.safetensors")) or sorted(Path(cfg.model.init_from).glob("*.bin"))
        digest = content_digest({w.name: w for w in weights})
        out["init_from"] = {"path": cfg.model.init_from, "sha256": {n: e["sha256"] for n, e in digest.items()},
                            "fingerprint": model_fingerprint(cfg.model.init_from)}
    shards = packed_data_dir(cfg.data, out_dir)
    if (shards / "index.json").is_file():
        out["shards"] = {"path": str(shards), "index_sha256": sha256_file(shards / "index.json")}
    return out


def run_table(cfg: RunTableConfig) -> str:
    """The run's records (primary and secondary metrics, mean over seeds) as a LaTeX table."""
    from mcbio.results.latex import results_table, write_table

    records = [r for r in ResultStore(cfg.results_dir).records() if r.model == cfg.model]
    # Records of earlier weights exported under the same run name are not this run's.
    current = model_fingerprint_if_present(cfg.model_path)
    records = [r for r in records if r.model_fingerprint == current] if current else one_fingerprint_per_model(records)
    table = results_table(records, caption=f"Fine-tuning results of {cfg.model} (test set, mean over seeds)",
                          label=f"tab:{cfg.model}", decimal_comma=cfg.decimal_comma)
    return str(write_table(table, cfg.out_path))
