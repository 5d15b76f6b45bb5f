"""Evaluate one model on one task with one seed (one element of an evaluation job array)."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import os
import time
from pathlib import Path

import torch

from mcbio.config.schema import FinetuneConfig
from mcbio.evaluate.loaders import read_brat, read_conll, read_hf_disk, read_table
from mcbio.evaluate.tasks import TaskSpec, get_task

log = logging.getLogger(__name__)


def read_split(task: TaskSpec, split: str, shared_data: str | None) -> list:
    path = task.path(split, shared_data)
    if task.format == "conll":
        return read_conll(path)
    if task.format == "brat":
        return read_brat(path, task.segment, task.max_words, task.discontinuous, task.entity_types or None)
    if task.format == "hf_disk":
        fields = {"tokens": task.tokens_field, "tags": task.tags_field, "text": task.text_field, "label": task.label_field}
        return read_hf_disk(path, split, fields, "ner" if task.type == "ner" else "classification", task.label_sep)
    return read_table(path, task.text_field, task.label_field, task.label_sep, task.format)


def read_splits(task: TaskSpec, shared_data: str | None, cfg: FinetuneConfig) -> dict[str, list]:
    """train/dev/test examples, capped by ``max_train_examples`` / ``max_eval_examples``."""
    splits = {s: read_split(task, s, shared_data) for s in ("train", "dev", "test")}
    if cfg.max_train_examples:
        splits["train"] = splits["train"][: cfg.max_train_examples]
    if cfg.max_eval_examples:
        for s in ("dev", "test"):
            splits[s] = splits[s][: cfg.max_eval_examples]
    return splits


def finetune(model_path: str, task: TaskSpec, splits: dict, seed: int, cfg: FinetuneConfig, device: str) -> dict:
    if task.type == "ner":
        from mcbio.evaluate.ner import finetune_ner

        return finetune_ner(model_path, splits, seed, cfg, device)
    from mcbio.evaluate.classify import finetune_classifier

    return finetune_classifier(model_path, splits, seed, cfg, task.type == "multi_label", device)


def _grid(cfg: FinetuneConfig) -> list[dict]:
    search = cfg.hp_search
    axes = {k: v for k, v in (("lr", search.lr), ("batch_size", search.batch_size),
                              ("warmup_ratio", search.warmup_ratio)) if v}
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())] if axes else []


def search_hyperparameters(model_path: str, task: TaskSpec, splits: dict, cfg: FinetuneConfig, device: str,
                           cache_dir: Path | None = None) -> dict:
    """Best grid point on the validation split; cached so that array elements share one search."""
    grid = _grid(cfg)
    key = hashlib.sha256(json.dumps([model_path, dataclasses.asdict(task), dataclasses.asdict(cfg)],
                                    sort_keys=True, default=str).encode()).hexdigest()[:12]
    cache = cache_dir / f"{task.name}-{key}.json" if cache_dir else None
    if cache is not None and cache.is_file():
        return json.loads(cache.read_text())
    trials = []
    for point in grid:
        trial_cfg = dataclasses.replace(cfg, **point, epochs=cfg.hp_search.epochs or cfg.epochs)
        res = finetune(model_path, task, splits, cfg.hp_search.seed, trial_cfg, device)
        trials.append({"params": point, "dev_score": res["dev_score"]})
        log.info("hp search %s %s: dev %.4f", task.name, point, res["dev_score"])
    best = max(trials, key=lambda t: t["dev_score"])
    found = {"best": best["params"], "trials": trials}
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(found, indent=1))
        tmp.replace(cache)
    return found


def evaluate_task(model_path: str, task_name: str | TaskSpec, seed: int, cfg: FinetuneConfig,
                  shared_data: str | None, tasks: dict[str, TaskSpec] | None = None,
                  hp_cache_dir: str | Path | None = None) -> dict:
    """``{"metrics": {name: value}, "primary_metric": name, "best_epoch": n, "train_time_s": s, ...}``.

    ``tasks`` holds user-declared tasks (they shadow built-in ones of the same name).
    """
    task = task_name if isinstance(task_name, TaskSpec) else get_task(task_name, tasks)
    started = time.time()
    splits = read_splits(task, shared_data, cfg)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    extra: dict = {}
    if _grid(cfg):
        found = search_hyperparameters(model_path, task, splits, cfg, device,
                                       Path(hp_cache_dir) if hp_cache_dir else None)
        cfg = dataclasses.replace(cfg, **found["best"])
        extra["hp_search"] = found["best"]
    result = finetune(model_path, task, splits, seed, cfg, device)
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
        **extra,
    }
