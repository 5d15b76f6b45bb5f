"""Fine-tuning evaluation as job elements: one (model, task, seed) each, one record per metric.

The planner resolves and checks every task (data paths, the first record of every split
through the real reader, the metric), names every model, and leaves out the elements
whose primary record is already in the results store under the same done-key (model,
task, seed, settings hash, split, model fingerprint). Both the evaluation launcher and a
pretraining run's evaluation stage plan through :func:`evaluation_elements`, so the same
evaluation is never run twice by either path, and a model retrained under the same name
(other weights, another fingerprint) is evaluated again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from mcbio.cluster.launcher import LaunchContext, element_name, run_dir_of, run_name
from mcbio.cluster.plan import Element, Plan, Stage
from mcbio.config.checks import Problems, check_model_dir, check_output_dirs
from mcbio.config.evaluation import EvalElementConfig, EvaluateRunConfig
from mcbio.config.loader import stable_hash
from mcbio.config.schema import EvalSuiteConfig, FinetuneConfig, RunConfig
from mcbio.evaluate.tasks import BUILTIN_TASKS, TaskSpec, get_task, load_task_file, task_from_dict
from mcbio.model.fingerprint import model_fingerprint, model_fingerprint_if_present
from mcbio.results.records import ResultRecord, ResultStore, git_commit

log = logging.getLogger(__name__)

# Written beside a run's HF export: the run's name (the model's record name) and hash.
RUN_MARKER = "mcbio_run.json"


# --------------------------------------------------------------------------- tasks


def suite_tasks(suite: EvalSuiteConfig) -> dict[str, TaskSpec]:
    """Tasks from ``task_files`` then ``custom_tasks``; inline keys amend a task of the same name.

    Relative roots: a task file's are relative to that file, inline ones to the working directory.
    """
    tasks: dict[str, TaskSpec] = {}
    for file in suite.task_files:
        tasks.update(load_task_file(Path(file).expanduser().resolve()))
    for name, values in suite.custom_tasks.items():
        known = tasks.get(name) or BUILTIN_TASKS.get(name)
        base = {k: v for k, v in dataclasses.asdict(known).items() if k != "name"} if known else {}
        tasks[name] = task_from_dict(name, {**base, **values}, f"custom_tasks.{name}", base_dir=Path.cwd())
    return tasks


def finetune_for(suite: EvalSuiteConfig, task: str) -> FinetuneConfig:
    """``finetune`` with the task's ``task_finetune`` overrides merged in (typed, errors name the key)."""
    overrides = suite.task_finetune.get(task)
    return suite.finetune.merged(overrides, f"task_finetune.{task}") if overrides else suite.finetune


def settings_hash(task: TaskSpec, ft: FinetuneConfig, init: str) -> str:
    """What an element computes, model and seed apart: the same across seeds and launches."""
    return stable_hash({"task": dataclasses.asdict(task), "finetune": dataclasses.asdict(ft), "init": init})


def known_metrics(task_type: str) -> set[str]:
    """The metric names the scorer of ``task_type`` reports (asked of the scorer, so they stay in sync)."""
    import numpy as np

    from mcbio.evaluate import metrics

    if task_type == "ner":
        return set(metrics.ner_scores([["B-X", "O"]], [["B-X", "O"]]))
    if task_type == "single_label":
        return set(metrics.single_label_scores([0, 1], [0, 1], 2))
    return set(metrics.multi_label_scores(np.array([[1, 0]]), np.array([[1, 0]])))


def check_task(task: TaskSpec, shared_data: str | None, problems: Problems, key: str) -> bool:
    """Every split's file exists and its first record reads; the metric is known. False if data is missing."""
    from mcbio.evaluate.loaders import read_task_split

    metrics = known_metrics(task.type)
    if task.primary_metric not in metrics:
        problems.add(key, f"task '{task.name}': metric '{task.primary_metric}' is not reported for "
                          f"{task.type} tasks. Choose one of: {', '.join(sorted(metrics))}")
    for split in ("train", "dev", "test"):
        try:
            task.path(split, shared_data)
        except FileNotFoundError as err:
            problems.add(key, str(err))
            return False
        with problems.collect(key):
            rows = read_task_split(task, split, shared_data)
            if not rows:
                problems.add(key, f"task '{task.name}': the {split} split at {task.path(split, shared_data)} is empty")
    return True


def resolve_suite(suite: EvalSuiteConfig, shared_data: str | None, problems: Problems,
                  prefix: str = "") -> tuple[dict[str, tuple[TaskSpec, FinetuneConfig]], list[str]]:
    """name -> (task, fine-tune settings) for every task to run; plus notes on tasks left out."""
    extra: dict[str, TaskSpec] = {}
    with problems.collect(f"{prefix}task_files"):
        extra = suite_tasks(suite)
    unused = sorted(set(extra) - set(suite.tasks))
    notes = [f"declared task(s) {', '.join(unused)} not run: add them to '{prefix}tasks' to run them"] if unused else []
    specs: dict[str, tuple[TaskSpec, FinetuneConfig]] = {}
    for name in suite.tasks:
        try:
            task = get_task(name, extra)
        except KeyError as err:
            problems.add(f"{prefix}tasks", str(err.args[0]))
            continue
        ft = None
        with problems.collect(f"{prefix}task_finetune.{name}"):
            ft = finetune_for(suite, name)
        sub = Problems()
        if not check_task(task, shared_data, sub, f"{prefix}tasks") and suite.skip_missing_tasks:
            notes.append(f"task '{name}' left out: its data is missing (skip_missing_tasks=true)")
            continue
        problems.items += [i for i in sub.items if i not in problems.items]
        if ft is not None:
            specs[name] = (task, ft)
    if problems.items and unused:
        problems.add(f"{prefix}tasks", f"declared task(s) {', '.join(unused)} are not selected: a task runs only when "
                                       f"'{prefix}tasks' names it ({prefix}tasks=[{','.join(unused)}])")
    return specs, notes


# --------------------------------------------------------------------------- models


def exported_run_name(model_dir: Path) -> str | None:
    """The run that exported ``model_dir`` (its :data:`RUN_MARKER`), or None for any other model."""
    marker = model_dir / RUN_MARKER
    if not marker.is_file():
        return None
    try:
        return str(json.loads(marker.read_text(encoding="utf-8"))["run"])
    except (json.JSONDecodeError, KeyError):
        return None


def models_of(cfg: EvaluateRunConfig, problems: Problems) -> dict[str, tuple[str, str]]:
    """Record name -> (local path, init) for ``model`` and every entry of ``models``."""
    out: dict[str, tuple[str, str]] = {}
    entries = ([("model", cfg.model)] if cfg.model.path or not cfg.models else []) + \
              [(f"models.{k}", m) for k, m in cfg.models.items()]
    for key, entry in entries:
        if not entry.path:
            problems.add(f"{key}.path", "not set: give the local folder of the model "
                                        f"({key}.path=/path/to/model)")
            continue
        path = check_model_dir(problems, f"{key}.path", entry.path)
        if path is None:
            continue
        name = entry.name or (key.split(".", 1)[1] if key.startswith("models.") else exported_run_name(path))
        if not name:
            problems.add(f"{key}.name", f"not set, and {path} is not the export of an mcbio run (no {RUN_MARKER}): "
                                        f"name the model in the records ({key}.name=...)")
            continue
        if entry.init == "random":
            name = f"{name}-random-init"
        out[name] = (str(path), entry.init)
    return out


# --------------------------------------------------------------------------- elements


def evaluation_elements(models: dict[str, tuple[str, str]], specs: dict[str, tuple[TaskSpec, FinetuneConfig]],
                        suite: EvalSuiteConfig, run: RunConfig, run_dir: Path, experiment: str | None = None,
                        record_tags: dict[str, str] | None = None) -> list[Element]:
    """One element per (model, task, seed); ``done`` when its primary record is in the store.

    The done-key holds the model's fingerprint, read when ``done`` is asked: a model that
    is not there yet (a study plans the evaluation of what its pretraining will export)
    is not done, and the element fingerprints it when it runs. Records go to
    ``records/<experiment>.jsonl`` (default: the run's name) with ``record_tags`` in ``extra``.
    """
    store = ResultStore(Path(suite.results_dir).expanduser().resolve())
    elements = []
    for model, (path, init) in models.items():
        for name, (task, ft) in specs.items():
            h = settings_hash(task, ft, init)
            for seed in suite.seeds:
                cfg = EvalElementConfig(
                    model_name=model, model_path=path, model_init=init, task=task, seed=seed, finetune=ft,
                    shared_data=run.paths.shared_data, results_dir=str(store.root),
                    experiment=experiment or run_name(run), settings_hash=h, out_dir=str(run_dir),
                    run_name=run_name(run), tracking=run.tracking, record_tags=dict(record_tags or {}))
                key = (model, name, seed, h, "test")
                elements.append(Element(key=element_name("evaluate", model, name, f"seed-{seed}"),
                                        entry="mcbio.pipelines.evaluate:evaluate_element", cfg=cfg,
                                        done=lambda key=key, path=path, init=init: _recorded(store, key, path, init),
                                        describe=describe_result))
    return elements


def _recorded(store: ResultStore, key: tuple, path: str, init: str) -> bool:
    fingerprint = model_fingerprint_if_present(path, init)
    return fingerprint is not None and (*key, fingerprint) in store.done_keys()


def describe_result(result: dict) -> str:
    if result.get("skipped"):
        return "already recorded"
    primary = result.get("primary_metric")
    score = result.get("metrics", {}).get(primary)
    text = f"{primary} {score:.4f}" if isinstance(score, float) else str(result.get("metrics"))
    if result.get("degenerate"):
        text += f" -- DEGENERATE: {result['degenerate']}"
    return text


def caps_notes(specs: dict[str, tuple[TaskSpec, FinetuneConfig]]) -> list[str]:
    """What the fine-tuning settings cut short (a preset's caps), said once at launch."""
    from mcbio.evaluate.caps import describe_caps

    notes = []
    for ft in {json.dumps(dataclasses.asdict(ft), sort_keys=True): ft for _, ft in specs.values()}.values():
        caps = describe_caps(ft)
        if caps:
            notes.append("fine-tuning settings differ from the paper's protocol (recorded with every result): "
                         + "; ".join(caps))
    return notes


def plan_evaluation(cfg: EvaluateRunConfig, ctx: LaunchContext) -> Plan:
    """The evaluation launcher's plan: one stage of (model, task, seed) elements."""
    problems = Problems()
    models = models_of(cfg, problems)
    specs, notes = resolve_suite(cfg, cfg.paths.shared_data, problems)
    run_dir = run_dir_of(cfg)
    check_output_dirs(problems, cfg, run_dir)
    problems.raise_if_any(f"the evaluation '{cfg.name}'")
    elements = evaluation_elements(models, specs, cfg, cfg, run_dir)
    return Plan(name=run_name(cfg), run_dir=run_dir, notes=tuple(notes + caps_notes(specs)),
                stages=(Stage("evaluate", tuple(elements), cfg.resources),))


# --------------------------------------------------------------------------- job body


def evaluate_element(el: EvalElementConfig) -> dict:
    """Fine-tune and score one (model, task, seed); write one record per metric into the store."""
    from mcbio.evaluate.run import evaluate_task

    store = ResultStore(el.results_dir)
    # Read when the job runs: the model may have been exported after the plan was made.
    fingerprint = model_fingerprint(el.model_path, el.model_init)
    key = (el.model_name, el.task.name, el.seed, el.settings_hash, "test", fingerprint)
    if key in store.done_keys():
        log.info("%s / %s / seed %d: records exist, nothing to do", el.model_name, el.task.name, el.seed)
        return {"skipped": True}
    out_dir = Path(el.out_dir)
    res = evaluate_task(el.model_path, el.task, el.seed, el.finetune, el.shared_data,
                        hp_cache_dir=out_dir / "hp_search", init=el.model_init)
    extra = {
        "primary": False, "run": el.run_name, "model_path": el.model_path, "init": el.model_init,
        "best_epoch": res["best_epoch"], "epochs_run": res["epochs_run"],
        "train_time_s": round(res["train_time_s"], 3), "total_time_s": round(res["total_time_s"], 3),
        "train_examples_per_s": round(res["train_examples_per_s"], 3), "dev_score": res["dev_score"],
        "dev_history": res["dev_history"], "max_length": res["max_length"], "sizes": res["sizes"],
        "device": res["device"], "degenerate": res["degenerate"], "caps": res["caps"],
        **{k: res[k] for k in ("hp_search", "hp_trials") if k in res}, **el.record_tags,
    }
    commit = git_commit()
    records = [ResultRecord(model=el.model_name, task=el.task.name, seed=el.seed, metric=metric, value=float(value),
                            config_hash=el.settings_hash, commit=commit, model_fingerprint=fingerprint,
                            extra={**extra, "primary": metric == res["primary_metric"]})
               for metric, value in res["metrics"].items()]
    added = store.add(records, el.experiment)
    _log_to_wandb(el, out_dir, res)
    log.info("%s / %s / seed %d: %s (best epoch %d, %.1f s)", el.model_name, el.task.name, el.seed, res["metrics"],
             res["best_epoch"], res["train_time_s"])
    return {"metrics": res["metrics"], "primary_metric": res["primary_metric"], "best_epoch": res["best_epoch"],
            "degenerate": res["degenerate"], "records_added": added}


def _log_to_wandb(el: EvalElementConfig, out_dir: Path, res: dict[str, Any]) -> None:
    """One small W&B run per element (offline by default), grouped by the run."""
    from mcbio.tracking import wandb_run

    tracking = dataclasses.replace(el.tracking, group=el.tracking.group or el.run_name)
    name = f"{el.run_name}-{el.model_name}-{el.task.name}-s{el.seed}"
    out_dir.mkdir(parents=True, exist_ok=True)
    with wandb_run(tracking, name, out_dir, "evaluate", {"element": dataclasses.asdict(el)}) as run:
        if run is None:
            return
        for epoch, score in enumerate(res["dev_history"], start=1):
            run.log({f"dev/{res['primary_metric']}": score, "epoch": epoch})
        run.summary.update({f"test/{k}": v for k, v in res["metrics"].items()} | {"best_epoch": res["best_epoch"]})
