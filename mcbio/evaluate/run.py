"""Evaluate one model on one task with one seed (one element of an evaluation job array)."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from pathlib import Path

import torch
from filelock import FileLock

from mcbio.config.loader import stable_hash
from mcbio.config.schema import FinetuneConfig
from mcbio.files import read_json_object, write_json_atomic
from mcbio.evaluate.caps import applied_caps
from mcbio.evaluate.degenerate import degenerate_reason
from mcbio.evaluate.heads import INIT_MODES
from mcbio.evaluate.loaders import read_task_split
from mcbio.evaluate.tasks import TaskSpec, get_task

log = logging.getLogger(__name__)


def read_split(task: TaskSpec, split: str, shared_data: str | None) -> list:
    """One split's examples, in the task's format (see :func:`mcbio.evaluate.loaders.read_task_split`)."""
    return read_task_split(task, split, shared_data)


def read_splits(task: TaskSpec, shared_data: str | None, cfg: FinetuneConfig,
                full_sizes: dict[str, int] | None = None) -> dict[str, list]:
    """train/dev/test examples, capped by ``max_train_examples`` / ``max_eval_examples``.

    ``full_sizes``, when given, receives each split's size before the caps.
    """
    splits = {s: read_split(task, s, shared_data) for s in ("train", "dev", "test")}
    if full_sizes is not None:
        full_sizes.update({s: len(rows) for s, rows in splits.items()})
    if cfg.max_train_examples is not None:
        splits["train"] = splits["train"][: cfg.max_train_examples]
    if cfg.max_eval_examples is not None:
        for s in ("dev", "test"):
            splits[s] = splits[s][: cfg.max_eval_examples]
    return splits


def finetune(model_path: str, task: TaskSpec, splits: dict, seed: int, cfg: FinetuneConfig, device: str,
             init: str = "pretrained") -> dict:
    if task.type == "ner":
        from mcbio.evaluate.ner import finetune_ner

        return finetune_ner(model_path, splits, seed, cfg, device, init=init)
    from mcbio.evaluate.classify import finetune_classifier

    return finetune_classifier(model_path, splits, seed, cfg, task.type == "multi_label", device, init=init)


def _grid(cfg: FinetuneConfig) -> list[dict]:
    search = cfg.hp_search
    axes = {k: v for k, v in (("lr", search.lr), ("batch_size", search.batch_size),
                              ("warmup_ratio", search.warmup_ratio)) if v}
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())] if axes else []


def best_trial(trials: list[dict]) -> dict:
    """The trial with the highest dev score; a tie goes to the lower learning rate, then to the
    earlier grid point (a higher lr that only matches a lower one is not evidence for it)."""
    top = max(t["dev_score"] for t in trials)
    tied = [t for t in trials if t["dev_score"] == top]
    return min(tied, key=lambda t: t["params"].get("lr", 0.0))  # min keeps the first of equal keys


def search_cache_key(model_path: str, task: TaskSpec, cfg: FinetuneConfig, init: str = "pretrained") -> str:
    """One search per (model fingerprint, task, fine-tuning settings): the model by content, not by
    path, so a model retrained in the same folder searches again and a copy elsewhere reuses it."""
    from mcbio.model.fingerprint import model_fingerprint

    return stable_hash([model_fingerprint(model_path, init), init, dataclasses.asdict(task), dataclasses.asdict(cfg)])


def search_hyperparameters(model_path: str, task: TaskSpec, splits: dict, cfg: FinetuneConfig, device: str,
                           cache_dir: Path | None = None, init: str = "pretrained") -> dict:
    """``{"best": params, "trials": [{"params", "dev_score"}, ...]}``: every grid point trained with
    ``hp_search.seed`` and scored on the validation split, the best chosen by :func:`best_trial`.

    Cached in ``cache_dir``; the array elements of one (model, task) take the cache's lock in turn,
    so the first runs the search and the others read its choice instead of searching again.
    """
    if cache_dir is None:
        return _search(model_path, task, splits, cfg, device, init)
    cache = cache_dir / f"{task.name}-{search_cache_key(model_path, task, cfg, init)}.json"
    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache) + ".lock"):
        found = read_json_object(cache)
        if found is None:
            found = _search(model_path, task, splits, cfg, device, init)
            write_json_atomic(cache, found, indent=1)
    return found


def _search(model_path: str, task: TaskSpec, splits: dict, cfg: FinetuneConfig, device: str, init: str) -> dict:
    trials = []
    for point in _grid(cfg):
        trial_cfg = dataclasses.replace(cfg, **point, epochs=cfg.hp_search.epochs or cfg.epochs)
        res = finetune(model_path, task, splits, cfg.hp_search.seed, trial_cfg, device, init)
        trials.append({"params": point, "dev_score": res["dev_score"]})
        log.info("hp search %s %s: dev %.4f", task.name, point, res["dev_score"])
    return {"best": best_trial(trials)["params"], "trials": trials}


def evaluate_task(model_path: str, task_name: str | TaskSpec, seed: int, cfg: FinetuneConfig,
                  shared_data: str | None, tasks: dict[str, TaskSpec] | None = None,
                  hp_cache_dir: str | Path | None = None, init: str = "pretrained") -> dict:
    """``{"metrics": {name: value}, "primary_metric": name, "best_epoch": n, "train_time_s": s, ...}``.

    ``tasks`` holds user-declared tasks (they shadow built-in ones of the same name).
    ``init="random"`` fine-tunes the architecture of ``model_path`` with weights initialised
    from ``seed`` instead of the checkpoint's (the random-init baseline; returned as ``init``).
    Also returned: ``degenerate`` (None, or why the run is degenerate: dev score never above
    0, or single-class test predictions; see :mod:`mcbio.evaluate.degenerate`) and ``caps``
    (what ``cfg`` cuts short relative to the defaults, see :mod:`mcbio.evaluate.caps`, with
    ``full_sizes`` of the splits when an example cap is set).
    """
    if init not in INIT_MODES:
        raise ValueError(f"init={init!r}: choose one of {', '.join(INIT_MODES)}")
    task = task_name if isinstance(task_name, TaskSpec) else get_task(task_name, tasks)
    started = time.time()
    full_sizes: dict[str, int] = {}
    splits = read_splits(task, shared_data, cfg, full_sizes)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    extra: dict = {}
    if _grid(cfg):
        found = search_hyperparameters(model_path, task, splits, cfg, device,
                                       Path(hp_cache_dir) if hp_cache_dir else None, init)
        cfg = dataclasses.replace(cfg, **found["best"])
        extra["hp_search"] = found["best"]
        extra["hp_trials"] = found["trials"]
    result = finetune(model_path, task, splits, seed, cfg, device, init)
    degenerate = degenerate_reason(result["dev_history"], result.get("test_prediction_counts"),
                                   result.get("prediction_unit", "examples"))
    if degenerate:
        log.warning("%s / %s / seed %d%s is DEGENERATE: %s", Path(model_path).name, task.name, seed,
                    f" (init={init})" if init != "pretrained" else "", degenerate)
    caps = applied_caps(cfg)
    if caps["max_train_examples"] or caps["max_eval_examples"]:
        caps["full_sizes"] = full_sizes
    return {
        "metrics": result["scores"],
        "primary_metric": task.primary_metric,
        "best_epoch": result["best_epoch"],
        "train_time_s": result["train_time_s"],
        "total_time_s": time.time() - started,
        "dev_history": result["dev_history"],
        "dev_score": result["dev_score"],
        "epochs_run": result["epochs_run"],
        "train_examples_per_s": result["train_examples_per_s"],
        "max_length": result["max_length"],
        "sizes": {s: len(rows) for s, rows in splits.items()},
        "device": device,
        "init": init,
        "degenerate": degenerate,
        "caps": caps,
        **extra,
    }
