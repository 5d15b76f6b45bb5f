"""Fine-tuning evaluation as a job array: one (model, task, seed) per element, one record per metric.

The launcher plans every element, leaves out those whose records already exist (same
model, task, seed and config hash, primary metric present), and submits the rest as one
Slurm array (submitit's local executor without Slurm). Elements are idempotent: a
requeued or relaunched element checks the store again before training.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from omegaconf import OmegaConf

from mcbio.config.evaluation import EvalElementConfig, EvaluateRunConfig
from mcbio.config.loader import REPO_ROOT, ConfigError, load_config, to_yaml
from mcbio.config.schema import FinetuneConfig
from mcbio.evaluate.tasks import TaskSpec, get_task, load_task_file, task_from_dict
from mcbio.results.records import ResultRecord, ResultStore, git_commit

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- planning


def user_tasks(cfg: EvaluateRunConfig) -> dict[str, TaskSpec]:
    """Tasks from ``task_files`` then ``custom_tasks``; inline keys amend a task of the same name."""
    from mcbio.evaluate.tasks import BUILTIN_TASKS

    tasks: dict[str, TaskSpec] = {}
    for file in cfg.task_files:
        tasks.update(load_task_file(Path(file).expanduser().resolve()))
    for name, values in cfg.custom_tasks.items():
        known = tasks.get(name) or BUILTIN_TASKS.get(name)
        base = {k: v for k, v in dataclasses.asdict(known).items() if k != "name"} if known else {}
        tasks[name] = task_from_dict(name, {**base, **values}, f"custom_tasks.{name}", base_dir=Path.cwd())
    return tasks


def _absolute_task_paths(cfg: EvaluateRunConfig) -> None:
    """Relative task paths are read from the launch directory; jobs may run elsewhere."""
    cfg.task_files = [str(Path(f).expanduser().resolve()) for f in cfg.task_files]
    for values in cfg.custom_tasks.values():
        root = values.get("root")
        if root and root not in ("package", "shared") and not Path(root).is_absolute():
            values["root"] = str(Path(root).expanduser().resolve())


def models_of(cfg: EvaluateRunConfig) -> dict[str, str]:
    """Record name -> local path; a model declared without a path is an error naming its key."""
    out: dict[str, str] = {}
    entries = ([("model", cfg.model)] if cfg.model.path or not cfg.models else []) + \
              [(f"models.{k}", m) for k, m in cfg.models.items()]
    for key, entry in entries:
        if not entry.path:
            raise ConfigError(f"'{key}.path' is not set: give the local folder of the model ({key}.path=/path/to/model)")
        path = Path(entry.path).expanduser()
        if not (path / "config.json").is_file():
            raise ConfigError(f"'{key}.path': no HF model at {path} (config.json missing)")
        name = entry.name or (key.split(".", 1)[1] if key.startswith("models.") else path.name)
        out[name] = str(path.resolve())
    return out


def finetune_for(cfg: EvaluateRunConfig, task: str) -> FinetuneConfig:
    """``finetune`` with the task's ``task_finetune`` overrides merged in (typed, errors name the key)."""
    overrides = cfg.task_finetune.get(task)
    if not overrides:
        return cfg.finetune
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cfg.finetune), overrides)
    except Exception as err:
        raise ConfigError(f"task_finetune.{task}: {err}".splitlines()[0]) from None
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def element_hash(model_path: str, task: TaskSpec, ft: FinetuneConfig) -> str:
    """What an element computes, minus the seed: the same hash across seeds and launches."""
    blob = json.dumps({"model": model_path, "task": dataclasses.asdict(task), "finetune": dataclasses.asdict(ft)},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def results_root(cfg: EvaluateRunConfig) -> Path:
    if cfg.results_dir is None:
        return Path(cfg.out_dir or ".") / "results"
    path = Path(cfg.results_dir).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def finished(cfg: EvaluateRunConfig) -> set[tuple[str, str, int, str]]:
    """(model, task, seed, config_hash) whose primary-metric record is in the store."""
    return {(r.model, r.task, r.seed, r.config_hash) for r in ResultStore(results_root(cfg)).records(cfg.name)
            if r.extra.get("primary")}


def missing_data(task: TaskSpec, shared_data: str | None) -> str | None:
    try:
        for split in ("train", "dev", "test"):
            task.path(split, shared_data)
    except (FileNotFoundError, KeyError) as err:
        return str(err)
    return None


def plan(cfg: EvaluateRunConfig) -> tuple[list[EvaluateRunConfig], list[str]]:
    """Pending element configs and human-readable lines for every element (done or not)."""
    _absolute_task_paths(cfg)
    models = models_of(cfg)
    extra = user_tasks(cfg)
    specs = {}
    for name in cfg.tasks:
        try:
            specs[name] = get_task(name, extra)
        except KeyError as err:
            raise ConfigError(f"'tasks': {err.args[0]}") from None
    absent = {name: msg for name, spec in specs.items() if (msg := missing_data(spec, cfg.paths.shared_data))}
    if absent and not cfg.skip_missing_tasks:
        raise ConfigError("data missing for task(s):\n  " + "\n  ".join(absent.values())
                          + "\n(skip_missing_tasks=true leaves them out)")
    done = finished(cfg)
    pending, lines = [], []
    for model, path in models.items():
        for name, spec in specs.items():
            if name in absent:
                lines.append(f"{model} / {name}: data missing, left out")
                continue
            h = element_hash(path, spec, finetune_for(cfg, name))
            for seed in cfg.seeds:
                if (model, name, seed, h) in done:
                    lines.append(f"{model} / {name} / seed {seed}: done (skipped)")
                    continue
                element = copy.deepcopy(cfg)
                element.element = EvalElementConfig(model=model, task=name, seed=seed)
                element.model.path, element.model.name = path, model
                element.models = {}
                pending.append(element)
                lines.append(f"{model} / {name} / seed {seed}: pending")
    return pending, lines


# --------------------------------------------------------------------------- job body


def evaluate_element(cfg: EvaluateRunConfig) -> dict:
    """Fine-tune and score one (model, task, seed); write one record per metric."""
    from mcbio.evaluate.run import evaluate_task

    el = cfg.element
    if not el.task:
        raise ValueError("evaluate_element needs cfg.element (set by the launcher)")
    task = get_task(el.task, user_tasks(cfg))
    ft = finetune_for(cfg, el.task)
    model_path = str(cfg.model.path)
    h = element_hash(model_path, task, ft)
    if (el.model, el.task, el.seed, h) in finished(cfg):
        log.info("%s / %s / seed %d: records exist, nothing to do", el.model, el.task, el.seed)
        return {"model": el.model, "task": el.task, "seed": el.seed, "skipped": True}
    out_dir = Path(cfg.out_dir or ".")
    res = evaluate_task(model_path, task, el.seed, ft, cfg.paths.shared_data, hp_cache_dir=out_dir / "hp_search")
    commit = git_commit()
    extra = {
        "best_epoch": res["best_epoch"], "epochs_run": res["epochs_run"],
        "train_time_s": round(res["train_time_s"], 3), "total_time_s": round(res["total_time_s"], 3),
        "train_examples_per_s": round(res["train_examples_per_s"], 3), "dev_score": res["dev_score"],
        "dev_history": res["dev_history"], "max_length": res["max_length"], "sizes": res["sizes"],
        "device": res["device"], "model_path": model_path, "run": cfg.name,
        **({"hp_search": res["hp_search"]} if "hp_search" in res else {}),
    }
    records = [ResultRecord(model=el.model, task=el.task, seed=el.seed, metric=metric, value=float(value),
                            config_hash=h, commit=commit, extra={**extra, "primary": metric == res["primary_metric"]})
               for metric, value in res["metrics"].items()]
    added = ResultStore(results_root(cfg)).add(records, cfg.name)
    _log_to_wandb(cfg, out_dir, res)
    log.info("%s / %s / seed %d: %s (best epoch %d, %.1f s)", el.model, el.task, el.seed, res["metrics"],
             res["best_epoch"], res["train_time_s"])
    return {"model": el.model, "task": el.task, "seed": el.seed, "metrics": res["metrics"],
            "best_epoch": res["best_epoch"], "records_added": added}


def _log_to_wandb(cfg: EvaluateRunConfig, out_dir: Path, res: dict) -> None:
    """One small W&B run per element (offline by default), grouped by the evaluation run."""
    from mcbio.tracking import wandb_run

    el = cfg.element
    tagged = copy.deepcopy(cfg)
    tagged.name = f"{cfg.name}-{el.model}-{el.task}-s{el.seed}"
    tagged.tracking.group = cfg.tracking.group or cfg.name
    out_dir.mkdir(parents=True, exist_ok=True)
    with wandb_run(tagged, out_dir, "evaluate") as run:
        if run is None:
            return
        for epoch, score in enumerate(res["dev_history"], start=1):
            run.log({f"dev/{res['primary_metric']}": score, "epoch": epoch})
        run.summary.update({f"test/{k}": v for k, v in res["metrics"].items()} | {"best_epoch": res["best_epoch"]})


def evaluate_all(cfg: EvaluateRunConfig) -> dict:
    """Every pending element in this process, in turn (``array=false``, or a direct library call)."""
    pending, _ = plan(cfg)
    results = [evaluate_element(el) for el in pending]
    return {"elements": len(results), "records_added": sum(r.get("records_added", 0) for r in results)}


# --------------------------------------------------------------------------- launcher


def launch_evaluation(config_file: str | Path, argv: Sequence[str] | None = None,
                      entry: Callable[[EvaluateRunConfig], Any] | str = "mcbio.pipelines.evaluate:evaluate_element") -> int:
    """Load the config, plan the elements, submit the pending ones as one array and wait."""
    from mcbio.cluster.launch import follow, resolve_out_dir, submit, submit_array

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg = load_config(EvaluateRunConfig, config_file, argv)
        if cfg.dry_run:
            print(to_yaml(cfg), end="")
        out = resolve_out_dir(cfg)
        pending, lines = plan(cfg)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    for line in lines:
        print(f"[mcbio] {cfg.name}: {line}", flush=True)
    if cfg.dry_run or not pending:
        if not pending:
            print(f"[mcbio] {cfg.name}: nothing to run; records in {results_root(cfg)}", flush=True)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(to_yaml(cfg), encoding="utf-8")
    if not cfg.array:
        job = submit("mcbio.pipelines.evaluate:evaluate_all", cfg)
        print(f"[mcbio] {cfg.name}: {len(pending)} element(s) in job {job.job_id}", flush=True)
        if not cfg.wait:
            return 0
        try:
            print(f"[mcbio] done: {follow(job)}")
        except Exception as err:
            print(f"[mcbio] job {job.job_id} failed:\n{err}", file=sys.stderr)
            return 1
        return 0
    jobs = submit_array(entry, pending, out / "submitit", cfg.name)
    print(f"[mcbio] {cfg.name}: {len(jobs)} element(s) submitted: {', '.join(j.job_id for j in jobs)}", flush=True)
    if not cfg.wait:
        return 0
    failed = []
    for el, job in zip(pending, jobs):
        tag = f"{el.element.model} / {el.element.task} / seed {el.element.seed}"
        try:
            res = job.result()
            print(f"[mcbio] {tag}: {res.get('metrics', 'skipped')} best epoch {res.get('best_epoch', '-')}", flush=True)
        except Exception as err:  # one failed element must not hide the others
            failed.append(tag)
            msg = str(err).strip().splitlines()
            print(f"[mcbio] {tag} failed (job {job.job_id}): {msg[-1] if msg else err}", file=sys.stderr)
    print(f"[mcbio] {cfg.name}: records in {results_root(cfg) / 'records' / (cfg.name + '.jsonl')}", flush=True)
    if failed:
        print(f"[mcbio] {len(failed)} element(s) failed; launch again to rerun only those", file=sys.stderr)
        return 1
    return 0
