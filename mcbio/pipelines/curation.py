"""Curation experiment: raw documents -> passages -> labels -> upsampled mix -> packed shards.

Four datatrove stages, each an executor writing under ``<out_dir>``:
  passages  (N tasks)  readers -> segment -> LLM extraction -> passage filters -> Jaccard dedup
                       -> FineWeb-2 French chain -> LLM annotation (all, or a sample)   -> passages/
  distil    (1 task)   TF-IDF + linear labeler on the LLM-labelled sample          -> classifier/
  overlap_counts (N)   with decontamination on: documents holding each test n-gram -> overlap_counts/
  select    (N tasks)  [test-split overlap] -> classifier labels -> type/length filter -> quality upsampling
                       -> curated/<group>/ (overlap reports per rank -> decontamination/)
  mix_pack  (1 task)   token-share mix -> tokenise -> packed shards                  -> shards/
Each stage is one job array of the one launcher, a datatrove rank per element (run by
datatrove's ``LocalPipelineExecutor`` for that rank alone), chained to the previous stage
by an ``afterok`` dependency on Slurm; a rank is done when datatrove's completion marker
exists, so a relaunch runs only unfinished ranks. The LLM stage asks for a GPU per
element (``executor.llm_needs``), the others for CPUs. A last element writes the
statistics: ``curation_stats.json`` (schema in :mod:`mcbio.data.curation.stats`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List

from mcbio.cluster.launcher import LaunchContext, element_name, run_dir_of, run_name
from mcbio.cluster.plan import Element, Plan, Stage, single_task, with_needs
from mcbio.config.checks import Problems, check_llm, check_output_dirs, check_path, check_tokenizer_dir
from mcbio.config.curation import CurationRunConfig
from mcbio.config.loader import config_hash
from mcbio.files import write_json_atomic

log = logging.getLogger(__name__)


class CurationPaths:
    def __init__(self, out_dir: Path) -> None:
        self.root = out_dir
        self.passages = out_dir / "passages"
        self.curated = out_dir / "curated"
        self.classifier = out_dir / "classifier" / "labeler.pkl"
        self.classifier_report = out_dir / "classifier" / "heldout.json"
        self.rejects = out_dir / "rejects"
        self.decontamination = out_dir / "decontamination"
        self.overlap_counts = out_dir / "overlap_counts"
        self.logs = out_dir / "logs"
        self.stats = out_dir / "curation_stats.json"


def build_stage_pipelines(cfg: CurationRunConfig, paths: CurationPaths) -> List[tuple[str, list, int]]:
    """(stage name, datatrove pipeline, tasks) for every stage of :func:`stage_tasks`, in order."""
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    from mcbio.data.curation.chain import passage_steps, selection_steps
    from mcbio.data.curation.readers import build_readers
    from mcbio.data.curation.stages import DistilStep, MixPackStep
    from mcbio.data.curation.text import TokenCounter

    counter = TokenCounter(cfg.pack.tokenizer)
    use_classifier = cfg.annotation.llm_sample_fraction < 1.0
    stages = []
    for stage, tasks in stage_tasks(cfg):
        if stage == "passages":
            pipe = [*build_readers(cfg.active_sources()),
                    *passage_steps(cfg, str(paths.rejects), counter, str(paths.logs / "llm")),
                    JsonlWriter(str(paths.passages), output_filename="${rank}.jsonl.gz")]
            stages.append((stage, pipe, tasks))
        elif stage == "distil":
            stages.append((stage, [DistilStep(str(paths.passages), str(paths.classifier),
                                              str(paths.classifier_report), cfg.annotation.classifier,
                                              cfg.annotation.sample_seed)], tasks))
        elif stage == "overlap_counts":
            from mcbio.data.curation.decontamination import OverlapCounts

            pipe = [JsonlReader(str(paths.passages), glob_pattern="*.jsonl.gz"),
                    OverlapCounts(cfg.decontamination, str(paths.overlap_counts), cfg.paths.shared_data)]
            stages.append((stage, pipe, tasks))
        elif stage == "select":
            classifier = str(paths.classifier) if use_classifier else None
            pipe = [JsonlReader(str(paths.passages), glob_pattern="*.jsonl.gz"),
                    *selection_steps(cfg, classifier, counter, str(paths.rejects),
                                     report_dir=str(paths.decontamination), counts_dir=str(paths.overlap_counts)),
                    JsonlWriter(str(paths.curated), output_filename="${mix_group}/${rank}.jsonl.gz")]
            stages.append((stage, pipe, tasks))
        elif stage == "mix_pack":
            stages.append((stage, [MixPackStep(str(paths.curated), str(paths.root), cfg.mix, cfg.pack)], tasks))
    return stages


@dataclass(frozen=True)
class StageRank:
    """One element of a curation stage: rank ``rank`` of ``tasks``."""

    cfg: CurationRunConfig
    stage: str
    rank: int
    tasks: int


def run_stage_rank(job: StageRank) -> dict:
    """Run one rank of one datatrove stage here; datatrove skips it when already complete."""
    from datatrove.executor import LocalPipelineExecutor

    paths = CurationPaths(Path(job.cfg.out_dir))
    if job.stage == "passages":
        for what, llm in (("extraction", job.cfg.extraction_llm()), ("labels", job.cfg.llm)):
            if llm.backend == "rules":
                log.warning("%s: backend 'rules', deterministic rules, NOT an LLM", what)
    pipe = next(p for name, p, _ in build_stage_pipelines(job.cfg, paths) if name == job.stage)
    LocalPipelineExecutor(pipeline=pipe, tasks=job.tasks, workers=1, local_tasks=1, local_rank_offset=job.rank,
                          logging_dir=str(paths.logs / job.stage)).run()
    return {"stage": job.stage, "rank": job.rank}


def stage_tasks(cfg: CurationRunConfig) -> list[tuple[str, int]]:
    """(stage, ranks) in order, as :func:`build_stage_pipelines` builds them (without building them).

    With decontamination on, ``overlap_counts`` comes right before ``select``: the boilerplate
    rule needs the whole corpus's document frequencies before any rank decides.
    """
    out = []
    for stage in cfg.stages:
        if stage == "distil" and cfg.annotation.llm_sample_fraction >= 1.0:
            continue
        if stage == "select" and cfg.decontamination.enabled:
            out.append(("overlap_counts", cfg.executor.tasks))
        out.append((stage, cfg.executor.tasks if stage in ("passages", "select") else 1))
    return out


def plan_curation(cfg: CurationRunConfig, ctx: LaunchContext, problems: Problems | None = None) -> Plan:
    """The plan; its launch checks raise here, or go into ``problems`` when given (a study collects them)."""
    own = problems is None
    problems = Problems(produced=ctx.produced) if own else problems
    for name, src in cfg.active_sources().items():
        if check_path(problems, f"sources.{name}.path", src.path) is not None:
            check_source_encoding(problems, name, src)
    check_output_dirs(problems, cfg, run_dir_of(cfg))
    if cfg.pack.tokenizer:
        path = check_path(problems, "pack.tokenizer", cfg.pack.tokenizer, "dir")
        if path is not None:
            check_tokenizer_dir(problems, "pack.tokenizer", path)
    if "passages" in cfg.stages:
        check_llm(problems, "llm", cfg.llm)
        if cfg.extraction.enabled and cfg.extraction.llm is not None:
            check_llm(problems, "extraction.llm", cfg.extraction.llm)
    if cfg.decontamination.enabled:
        check_decontamination(cfg, problems)
    if own:
        problems.raise_if_any(f"the curation '{cfg.name}'")
    run_dir = run_dir_of(cfg)
    element_cfg = dataclasses.replace(cfg, out_dir=str(run_dir))
    paths = CurationPaths(run_dir)
    stages: list[Stage] = []
    for stage, tasks in stage_tasks(cfg):
        done_dir = paths.logs / stage / "completions"
        elements = tuple(Element(key=element_name(stage, f"rank-{r:05d}"), entry="mcbio.pipelines.curation:run_stage_rank",
                                 cfg=StageRank(element_cfg, stage, r, tasks),
                                 done=lambda f=done_dir / f"{r:05d}": f.is_file())
                         for r in range(tasks))
        llm = stage == "passages" and any(b != "rules" for b in cfg.passages_llm_backends())
        needs = cfg.executor.llm_needs if llm else cfg.executor.cpu_needs
        stages.append(Stage(stage, elements, with_needs(cfg.resources, needs),
                            after=(stages[-1].name,) if stages else ()))
    stats = Element(key=element_name("stats", cfg.name), entry="mcbio.pipelines.curation:write_stats",
                    cfg=element_cfg, done=lambda: _stats_fresh(paths), describe=_describe_stats)
    stages.append(Stage("stats", (stats,), single_task(cfg.resources, timeout_min=10),
                        after=tuple(s.name for s in stages)))
    return Plan(name=run_name(cfg), run_dir=run_dir, stages=tuple(stages))


def check_source_encoding(problems: Problems, name: str, src) -> None:
    """Every file of the source decodes as UTF-8, else the first bad byte is named (file, line): a rank
    would fail there (``on_bad_document: fail``), hours into the stage. ``skip`` sources are not scanned:
    their bad documents are dropped and counted instead."""
    if src.on_bad_document != "fail" or problems.pending(Path(src.path).expanduser()):
        return
    from mcbio.data.curation.readers import first_invalid_utf8

    key = f"sources.{name}.path"
    with problems.collect(key):
        found = first_invalid_utf8(name, src)
        if found:
            problems.add(key, f"{found}; fix the file, or drop such documents with sources.{name}.on_bad_document=skip")


def check_decontamination(cfg: CurationRunConfig, problems: Problems) -> None:
    """Every task's split reads now: a wrong task name or missing data fails before submission, not in
    each rank of the overlap_counts and select stages (where the split is read again to build the index)."""
    from mcbio.data.curation.decontamination import split_texts

    dc = cfg.decontamination
    if not dc.tasks:
        problems.add("decontamination.tasks", "decontamination is enabled but names no task: list the evaluation "
                                              "tasks whose split to check (e.g. [quaero_emea, quaero_medline])")
    for name in dc.tasks:
        with problems.collect("decontamination.tasks"):
            if not split_texts(name, dc.split, cfg.paths.shared_data):
                problems.add("decontamination.tasks", f"task '{name}': its {dc.split} split has no example")


def _stats_fresh(paths: CurationPaths) -> bool:
    """The statistics exist and are newer than every completed rank."""
    if not paths.stats.is_file():
        return False
    marks = [f.stat().st_mtime for f in paths.logs.glob("*/completions/*")]
    return paths.stats.stat().st_mtime >= max(marks, default=0.0)


def _describe_stats(summary: dict) -> str:
    return ", ".join(f"{k}={summary[k]}" for k in ("sequences", "tokens_packed", "stats") if k in summary)


def collect_stats(cfg: CurationRunConfig, paths: CurationPaths) -> dict:
    from mcbio.data.curation.stats import reject_counts, stage_stats
    from mcbio.data.curation.text import TokenCounter

    from mcbio.llm.accounting import llm_summary

    report: dict = {"token_unit": TokenCounter(cfg.pack.tokenizer).unit, "llm_backend": cfg.llm.backend,
                    "extraction_backend": cfg.extraction_llm().backend, "stages": []}
    for stage in ("passages", "distil", "overlap_counts", "select", "mix_pack"):
        if (paths.logs / stage / "stats").is_dir():
            report["stages"].append(stage_stats(paths.logs / stage, stage))
    # Per LLM step: backend, model, prompts, tokens, time, tokens/s, valid answers, retries.
    step_llm = {"llm_extract": cfg.extraction_llm(), "llm_annotate": cfg.llm}
    report["llm"] = {}
    for stage in report["stages"]:
        for step in stage["steps"]:
            llm = step_llm.get(step["step"])
            summary = llm_summary(step["extra"], llm.backend, llm.model) if llm else {}
            if summary and step["step"] == "llm_annotate":
                summary["labels"] = label_distribution(step["extra"])
            if summary:
                report["llm"][step["step"]] = summary
            if step["step"] == "llm_extract":
                n = step["extra"].get("passages_out", 0)
                report["fidelity"] = {"passages": int(n), **{
                    k.split("/", 1)[1]: (v / n if n else 0.0)
                    for k, v in sorted(step["extra"].items()) if k.startswith("fidelity/")}}
    report["rejects"] = reject_counts(paths.rejects)
    if paths.decontamination.is_dir():
        from mcbio.data.curation.decontamination import merge_overlap_reports

        report["decontamination"] = merge_overlap_reports(paths.decontamination)
    for key, path in (("classifier", paths.classifier_report), ("mix", paths.root / "mix_report.json"),
                      ("pack", paths.root / "pack_report.json")):
        if path.is_file():
            report[key] = json.loads(path.read_text(encoding="utf-8"))
    write_json_atomic(paths.stats, report)
    return report


def label_distribution(extra: dict) -> dict:
    """``labels/<key>/<value>`` counts -> {key: {value: count}}, values in order."""
    from mcbio.data.curation.steps import LABEL_PREFIX

    out: dict = {}
    for k, v in extra.items():
        if k.startswith(LABEL_PREFIX):
            key, value = k[len(LABEL_PREFIX):].split("/", 1)
            out.setdefault(key, {})[value] = int(v)
    return {key: dict(sorted(vals.items(), key=lambda kv: (len(kv[0]), kv[0]))) for key, vals in sorted(out.items())}


def constant_labels(distribution: dict) -> list[str]:
    """The label keys that took one value on every passage (with more than one passage)."""
    return [f"{key}={next(iter(vals))}" for key, vals in distribution.items()
            if len(vals) == 1 and sum(vals.values()) > 1]


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
    for step, u in report.get("llm", {}).items():
        lines.append(f"{step}: {u['backend']} {u['model'] or ''} {u['prompts']} prompts, {u['prompt_tokens']} prompt "
                     f"+ {u['generated_tokens']} generated tokens in {u['seconds']:.0f} s ({u['tokens_per_s']:.0f} "
                     f"tokens/s, engine start {u['engine_start_s']:.0f} s), {100 * u['valid_first_try_share']:.1f} % "
                     f"schema-valid first try, {u['retries']} retries, {u['invalid']} invalid")
        constant = constant_labels(u.get("labels", {}))
        if constant:
            lines.append(f"WARNING {step}: every passage got {', '.join(constant)}: these labels carry no "
                         "information (is the model too small for the task?)")
    return "\n".join(lines)


def write_stats(cfg: CurationRunConfig) -> dict:
    """Merge every stage's statistics into ``curation_stats.json`` and print the stage table."""
    out_dir = Path(cfg.out_dir)
    paths = CurationPaths(out_dir)
    report = collect_stats(cfg, paths)
    print(format_stage_table(report), flush=True)
    summary = {"out_dir": str(out_dir), "config_hash": config_hash(cfg), "stats": str(paths.stats)}
    if "pack" in report:
        summary.update(shards=report["pack"]["shards_dir"], sequences=report["pack"].get("sequences"),
                       tokens_packed=report["mix"]["tokens_packed"])
    if "fidelity" in report:
        summary["fidelity"] = report["fidelity"]
    return summary
