"""Curation experiment: raw documents -> passages -> labels -> upsampled mix -> packed shards.

Four datatrove stages, each an executor writing under ``<out_dir>``:
  passages  (N tasks)  readers -> segment -> LLM extraction -> passage filters -> Jaccard dedup
                       -> FineWeb-2 French chain -> LLM annotation (all, or a sample)   -> passages/
  distil    (1 task)   TF-IDF + linear labeler on the LLM-labelled sample          -> classifier/
  select    (N tasks)  classifier labels -> type/length filter -> quality upsampling -> curated/<group>/
  mix_pack  (1 task)   token-share mix -> tokenise -> packed shards                  -> shards/
``cluster`` picks LocalPipelineExecutor or SlurmPipelineExecutor job arrays chained by
dependencies. Finished tasks are skipped on a rerun (datatrove completion markers).
Statistics: ``curation_stats.json`` (schema in :mod:`mcbio.data.curation.stats`).
"""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
import time
from pathlib import Path
from typing import List

from mcbio.cluster.executor import resolve_cluster
from mcbio.config.curation import CurationRunConfig
from mcbio.config.loader import config_hash, to_yaml
from mcbio.data.curation.chain import passage_steps, selection_steps
from mcbio.data.curation.readers import build_readers
from mcbio.data.curation.stages import DistilStep, MixPackStep
from mcbio.data.curation.stats import stage_stats
from mcbio.files import write_json_atomic
from mcbio.data.curation.text import TokenCounter

log = logging.getLogger(__name__)


class CurationPaths:
    def __init__(self, out_dir: Path) -> None:
        self.root = out_dir
        self.passages = out_dir / "passages"
        self.curated = out_dir / "curated"
        self.classifier = out_dir / "classifier" / "labeler.pkl"
        self.classifier_report = out_dir / "classifier" / "heldout.json"
        self.rejects = out_dir / "rejects"
        self.logs = out_dir / "logs"
        self.stats = out_dir / "curation_stats.json"


def build_stage_pipelines(cfg: CurationRunConfig, paths: CurationPaths) -> List[tuple[str, list, int]]:
    """(stage name, datatrove pipeline, tasks) for every stage in ``cfg.stages``, in order."""
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    counter = TokenCounter(cfg.pack.tokenizer)
    tasks = cfg.executor.tasks
    use_classifier = cfg.annotation.llm_sample_fraction < 1.0
    stages = []
    for stage in cfg.stages:
        if stage == "passages":
            pipe = [*build_readers(cfg.active_sources()), *passage_steps(cfg, str(paths.rejects), counter),
                    JsonlWriter(str(paths.passages), output_filename="${rank}.jsonl.gz")]
            stages.append((stage, pipe, tasks))
        elif stage == "distil" and use_classifier:
            stages.append((stage, [DistilStep(str(paths.passages), str(paths.classifier),
                                              str(paths.classifier_report), cfg.annotation.classifier,
                                              cfg.annotation.sample_seed)], 1))
        elif stage == "select":
            classifier = str(paths.classifier) if use_classifier else None
            pipe = [JsonlReader(str(paths.passages), glob_pattern="*.jsonl.gz"),
                    *selection_steps(cfg, classifier, counter),
                    JsonlWriter(str(paths.curated), output_filename="${mix_group}/${rank}.jsonl.gz")]
            stages.append((stage, pipe, tasks))
        elif stage == "mix_pack":
            stages.append((stage, [MixPackStep(str(paths.curated), str(paths.root), cfg.mix, cfg.pack)], 1))
    return stages


def _slurm_env_command(cfg: CurationRunConfig) -> str:
    import sys

    lines = list(cfg.resources.setup)
    # The job runs the same interpreter (and so the same environment) as the launcher.
    lines.append(f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH")
    return "\n".join(lines)


def _wait_for_slurm(executors, poll_s: float) -> None:
    """Block until the last array has finished; raise if any task failed."""
    pending = {str(e.job_id): e for e in executors if e.job_id not in (None, -1)}
    while pending:
        out = subprocess.run(["squeue", "-h", "-o", "%F", "-j", ",".join(pending)], capture_output=True, text=True)
        alive = set(out.stdout.split()) if out.returncode == 0 else set()
        for job_id in list(pending):
            if job_id not in alive:
                exe = pending.pop(job_id)
                done = len(exe.get_incomplete_ranks()) == 0
                if not done:
                    raise RuntimeError(f"Slurm array {job_id} ({exe.job_name}) finished with incomplete tasks; "
                                       f"see {exe.logging_dir.path}/slurm_logs")
        if pending:
            time.sleep(poll_s)


def run_stages(cfg: CurationRunConfig, paths: CurationPaths) -> None:
    from datatrove.executor import LocalPipelineExecutor, SlurmPipelineExecutor

    backend = resolve_cluster(cfg.cluster)
    stages = build_stage_pipelines(cfg, paths)
    previous = None
    executors = []
    for name, pipe, tasks in stages:
        logging_dir = str(paths.logs / name)
        if backend == "slurm":
            res = cfg.resources
            exe = SlurmPipelineExecutor(
                pipeline=pipe, tasks=tasks, time=f"{int(res.timeout_min)}:00", partition=res.partition or "",
                cpus_per_task=res.cpus_per_task, mem_per_cpu_gb=cfg.executor.mem_per_cpu_gb,
                job_name=f"{cfg.name}-{name}", logging_dir=logging_dir, depends=previous,
                env_command=_slurm_env_command(cfg), qos=res.qos or "",
                sbatch_args={k: v for k, v in {"account": res.account, "constraint": res.constraint,
                                               **res.additional_parameters}.items() if v},
                slurm_logs_folder=str(paths.logs / name / "slurm_logs"), mail_type="NONE",
            )
            executors.append(exe)
            previous = exe
        else:
            exe = LocalPipelineExecutor(pipeline=pipe, tasks=tasks, workers=cfg.executor.workers,
                                        logging_dir=logging_dir)
            exe.run()
    if backend == "slurm" and executors:
        executors[-1].run()  # launches the whole dependency chain
        _wait_for_slurm(executors, cfg.executor.poll_s)


def collect_stats(cfg: CurationRunConfig, paths: CurationPaths) -> dict:
    report: dict = {"token_unit": TokenCounter(cfg.pack.tokenizer).unit, "llm_backend": cfg.llm.backend, "stages": []}
    for stage in ("passages", "distil", "select", "mix_pack"):
        if (paths.logs / stage / "stats").is_dir():
            report["stages"].append(stage_stats(paths.logs / stage, stage))
    for stage in report["stages"]:
        for step in stage["steps"]:
            if step["step"] == "llm_extract":
                n = step["extra"].get("passages_out", 0)
                report["fidelity"] = {"passages": int(n), **{
                    k.split("/", 1)[1]: (v / n if n else 0.0)
                    for k, v in sorted(step["extra"].items()) if k.startswith("fidelity/")}}
    report["rejects"] = {d.name: sum(1 for f in d.glob("*.jsonl") for _ in f.open(encoding="utf-8"))
                         for d in sorted(paths.rejects.glob("*")) if d.is_dir()}
    for key, path in (("classifier", paths.classifier_report), ("mix", paths.root / "mix_report.json"),
                      ("pack", paths.root / "pack_report.json")):
        if path.is_file():
            report[key] = json.loads(path.read_text(encoding="utf-8"))
    write_json_atomic(paths.stats, report)
    return report


def format_stage_table(report: dict) -> str:
    lines = [f"{'stage/step':38s} {'in':>8s} {'kept':>8s} {'dropped':>8s} {'tokens_kept':>12s}  reasons"]
    for stage in report["stages"]:
        for s in stage["steps"]:
            if not (s["in"] or s["kept"] or s["dropped_total"]):
                continue
            kept = s["kept"] or s["extra"].get("passages_out", 0)
            reasons = ", ".join(f"{k}={v}" for k, v in sorted(s["dropped"].items()))
            lines.append(f"{stage['stage'] + '/' + s['step']:38s} {s['in']:8d} {int(kept):8d} {s['dropped_total']:8d} "
                         f"{s['tokens_kept']:12d}  {reasons}")
    return "\n".join(lines)


def run_curation_experiment(cfg: CurationRunConfig) -> dict:
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(to_yaml(cfg), encoding="utf-8")
    paths = CurationPaths(out_dir)
    if cfg.llm.backend == "rules":
        log.warning("llm.backend=rules: extraction and labels come from deterministic rules, NOT from an LLM")
    run_stages(cfg, paths)
    report = collect_stats(cfg, paths)
    print(format_stage_table(report), flush=True)
    summary = {"out_dir": str(out_dir), "config_hash": config_hash(cfg), "stats": str(paths.stats)}
    if "pack" in report:
        summary.update(shards=report["pack"]["shards_dir"], sequences=report["pack"].get("sequences"),
                       tokens_packed=report["mix"]["tokens_packed"])
    if "fidelity" in report:
        summary["fidelity"] = report["fidelity"]
    return summary
