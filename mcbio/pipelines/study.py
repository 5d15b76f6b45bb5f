"""A study: the whole recipe as one plan (see :mod:`mcbio.config.study` for its steps).

Each step is the repository's own planner on a config the study builds for it, in a folder
of the study's run directory; the study only prefixes the stage names with the step
(``base-pretrain``, ``curation-select``...) and chains each step's first stages after the
steps whose outputs it reads. What one step writes and the next reads is a path the study
names itself (``StudyPaths``); the launch checks accept those paths before they exist.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcbio.cluster.launcher import LaunchContext, element_name, run_dir_of, run_name
from mcbio.cluster.plan import Element, Plan, Stage, single_task, with_needs
from mcbio.config.checks import Problems, check_output_dirs
from mcbio.config.curation import CurationRunConfig, CurationSettings, SourceConfig
from mcbio.config.ontobook import OntobookRunConfig, OntobookSettings
from mcbio.config.schema import PretrainRunConfig, RunConfig
from mcbio.config.report import StudyTable
from mcbio.config.study import StudyConfig, arm_train
from mcbio.data.ontobook.build import DOCUMENTS
from mcbio.pipelines.curation import CurationPaths, plan_curation
from mcbio.pipelines.evaluate import caps_notes, evaluation_elements, resolve_suite
from mcbio.pipelines.ontobook import plan_ontobook
from mcbio.pipelines.pretrain import pretraining_stages, table_is_fresh, wait_for_export
from mcbio.results.records import ResultStore


class StudyPaths:
    """Where each step of a study writes, and so where the next one reads."""

    def __init__(self, run_dir: Path) -> None:
        self.root = run_dir
        self.base = run_dir / "base"
        self.base_export = self.base / "hf"
        self.ontobook = run_dir / "ontobook"
        self.ontobook_documents = self.ontobook / DOCUMENTS
        self.curation = run_dir / "curation"
        self.shards = self.curation / "shards"
        self.tables = run_dir / "tables"

    def arm(self, name: str) -> Path:
        return self.root / name


def _run_keys(cfg: StudyConfig, step: str, out_dir: Path) -> dict[str, Any]:
    """The study's scheduling keys for one step: its name (``<study>-<step>``) and folder."""
    tracking = dataclasses.replace(cfg.tracking, group=cfg.tracking.group or cfg.name, tags=[*cfg.tracking.tags, step])
    keys = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(RunConfig)}
    return {**keys, "name": f"{cfg.name}-{step}", "out_dir": str(out_dir), "tracking": tracking}


def _settings(settings: Any, base_type: type) -> dict[str, Any]:
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(base_type)}


def base_config(cfg: StudyConfig, paths: StudyPaths) -> PretrainRunConfig:
    return PretrainRunConfig(**_run_keys(cfg, "base", paths.base), stages=["pretrain"], model=cfg.base.model,
                             data=cfg.base.data, train=cfg.base.train, evaluation=cfg.evaluation)


def ontobook_config(cfg: StudyConfig, paths: StudyPaths) -> OntobookRunConfig:
    return OntobookRunConfig(**_run_keys(cfg, "ontobook", paths.ontobook), **_settings(cfg.ontobook, OntobookSettings))


def curation_config(cfg: StudyConfig, paths: StudyPaths) -> CurationRunConfig:
    """The study's curation: its OntoBook output as the ontobook group, the base tokenizer for packing,
    and overlap decontamination against the study's evaluation tasks unless tasks are named."""
    settings = _settings(cfg.curation, CurationSettings)
    settings["sources"] = {**cfg.curation.sources, "ontobook": SourceConfig(
        path=str(paths.ontobook_documents), format="jsonl", group="ontobook", curate=False)}
    settings["pack"] = dataclasses.replace(cfg.curation.pack, tokenizer=str(paths.base_export))
    decont = cfg.curation.decontamination
    settings["decontamination"] = dataclasses.replace(decont, tasks=list(decont.tasks or cfg.evaluation.tasks))
    return CurationRunConfig(**_run_keys(cfg, "curation", paths.curation), **settings)


def arm_config(cfg: StudyConfig, paths: StudyPaths, arm: str) -> PretrainRunConfig:
    """One arm: the base export's weights and tokenizer, the curated shards, its own phase 1."""
    model = dataclasses.replace(cfg.base.model, init_from=str(paths.base_export), tokenizer=None)
    data = dataclasses.replace(cfg.continued.data, corpus=None, shards=str(paths.shards))
    return PretrainRunConfig(**_run_keys(cfg, arm, paths.arm(arm)), stages=["pretrain"], model=model, data=data,
                             train=arm_train(cfg.continued.train, cfg.arms[arm]), evaluation=cfg.evaluation)


def _step_stages(step: str, plan: Plan, after: tuple[str, ...]) -> list[Stage]:
    """A step's stages named ``<step>-<stage>``; its first stages wait for ``after``."""
    out = []
    for s in plan.stages:
        inner = tuple(f"{step}-{a}" for a in s.after)
        out.append(dataclasses.replace(s, name=f"{step}-{s.name}", after=inner or after))
    return out


@dataclass(frozen=True)
class StudyTableJob:
    """The report element: the study's records -> its Table 4 and gain figure under ``<study>/tables``."""

    spec: StudyTable
    results_dir: str
    out_dir: str
    confidence: float
    decimal_comma: bool
    curation_stats: str
    # Record name -> (folder, init) of every model the study evaluates.
    models: dict[str, tuple[str, str]]


def study_table_element(job: StudyTableJob) -> dict:
    """The study's curation statistics into the store (``curation/<study>.json``), then its tables
    from the records of the weights now in the study's folders (a step re-run under the same name
    leaves records of its earlier weights in the store)."""
    import json

    from mcbio.files import write_json_atomic
    from mcbio.model.fingerprint import model_fingerprint
    from mcbio.results.records import ResultStore
    from mcbio.results.study_tables import curation_stats_path, write_study_outputs

    stats = json.loads(Path(job.curation_stats).read_text(encoding="utf-8"))
    write_json_atomic(curation_stats_path(ResultStore(job.results_dir), job.spec.experiment), stats)
    keep = {name: model_fingerprint(path, init) for name, (path, init) in job.models.items()}
    written = write_study_outputs(job.spec, job.results_dir, job.out_dir, job.confidence, job.decimal_comma, keep)
    return {"written": [str(p) for p in written]}


def plan_study(cfg: StudyConfig, ctx: LaunchContext) -> Plan:
    run_dir = run_dir_of(cfg)
    name = run_name(cfg)
    paths = StudyPaths(run_dir)
    produced = (str(paths.base_export), str(paths.ontobook_documents), str(paths.shards))
    problems = Problems(produced=produced)
    inner_ctx = dataclasses.replace(ctx, produced=produced)
    stages: list[Stage] = []

    base = base_config(cfg, paths)
    pretrain, _, _, _ = pretraining_stages(base, problems.section("base."))
    stages.append(Stage("base-pretrain", tuple(pretrain), base.resources))
    ontobook = _step_stages("ontobook", plan_ontobook(ontobook_config(cfg, paths), inner_ctx,
                                                      problems.section("ontobook.")), ())
    curation = _step_stages("curation", plan_curation(curation_config(cfg, paths), inner_ctx,
                                                      problems.section("curation.")),
                            ("base-pretrain", *(s.name for s in ontobook)))
    stages += ontobook + curation
    curation_stages = tuple(s.name for s in curation)
    models = {"base": (run_name(base), str(paths.base_export))}
    # Each model's export and the run that writes it: what reads an export is done only once that
    # run is (a base about to be retrained still has its old export on disk).
    exporters = {"base": (base, paths.base_export)}
    for arm in cfg.arms:
        arm_cfg = arm_config(cfg, paths, arm)
        pretrain, _, _, _ = pretraining_stages(arm_cfg, problems.section("continued."))
        stages.append(Stage(f"{arm}-pretrain", tuple(wait_for_export(pretrain, base, paths.base_export)),
                            arm_cfg.resources, after=("base-pretrain", *curation_stages)))
        models[arm] = (run_name(arm_cfg), str(paths.arm(arm) / "hf"))
        exporters[arm] = (arm_cfg, paths.arm(arm) / "hf")

    specs, notes = resolve_suite(cfg.evaluation, cfg.paths.shared_data, problems, "evaluation.")
    check_output_dirs(problems, cfg, run_dir)
    problems.raise_if_any(f"the study '{name}'")
    pretrained = tuple(s.name for s in stages if s.name.endswith("-pretrain"))
    # model key -> (record name, path, init); the random-init model reads the base export's config and tokenizer.
    evaluated_models = {key: (record, path, "pretrained") for key, (record, path) in models.items()}
    # Named as models_of names every init=random model; the base export's weights are never read.
    random_init = f"{models['base'][0]}-random-init" if cfg.report.random_init else ""
    if random_init:
        evaluated_models["base-random-init"] = (random_init, str(paths.base_export), "random")
    evaluated = {record: (path, init) for record, path, init in evaluated_models.values()}
    evaluate = []
    for key, (record, path, init) in evaluated_models.items():
        run_cfg, hf_dir = exporters["base" if key == "base-random-init" else key]
        evaluate += wait_for_export(evaluation_elements({record: (path, init)}, specs, cfg.evaluation, cfg, run_dir,
                                                        experiment=name, record_tags={"study": name}),
                                    run_cfg, hf_dir)
    stages.append(Stage("evaluate", tuple(evaluate), with_needs(cfg.resources, cfg.evaluation.needs), after=pretrained))
    if cfg.report.enabled:
        r = cfg.report
        spec = StudyTable(experiment=name, a=models[r.a][0], b=models[r.b][0], base=models["base"][0],
                          random_init=random_init, label_a=r.a, label_b=r.b, label_base="base",
                          paper_a=r.paper_a, paper_b=r.paper_b, tasks=list(specs), power=r.power)
        store = ResultStore(Path(cfg.evaluation.results_dir).expanduser().resolve())
        job = StudyTableJob(spec, str(store.root), str(paths.tables), r.confidence, r.decimal_comma,
                            str(CurationPaths(paths.curation).stats), evaluated)
        table = paths.tables / f"table4_{name}.tex"
        stages.append(Stage("report", (Element(
            key=element_name("report", name), entry="mcbio.pipelines.study:study_table_element", cfg=job,
            done=lambda: table_is_fresh(table, store.records_dir / f"{name}.jsonl"),
            describe=lambda res: ", ".join(res.get("written", []))),),
            single_task(cfg.resources, timeout_min=10), after=("evaluate",)))
    return Plan(name=name, run_dir=run_dir, stages=tuple(stages), notes=tuple(notes + caps_notes(specs)))
