"""Evaluate one model on one task with one seed; return result records."""

from __future__ import annotations

import torch

from mcbio.config.schema import FinetuneConfig
from mcbio.evaluate.loaders import read_conll
from mcbio.evaluate.ner import finetune_ner
from mcbio.evaluate.tasks import get_task

READERS = {"conll": read_conll}


def evaluate_task(model_path: str, task_name: str, seed: int, cfg: FinetuneConfig, shared_data: str | None) -> dict:
    """``{"metrics": {name: value}, "primary_metric": name, "best_epoch": n, "train_time_s": s}``."""
    task = get_task(task_name)
    if task.type != "ner":
        raise NotImplementedError(f"task '{task_name}' is {task.type}; only NER tasks are evaluated so far")
    if task.format not in READERS:
        raise NotImplementedError(f"task '{task_name}': no reader for format '{task.format}'")
    read = READERS[task.format]
    splits = {s: read(task.path(s, shared_data)) for s in ("train", "dev", "test")}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    result = finetune_ner(model_path, splits, seed, cfg, device)
    return {
        "metrics": result["scores"],
        "primary_metric": task.metric,
        "best_epoch": result["best_epoch"],
        "train_time_s": result["train_time_s"],
        "dev_history": result["dev_history"],
    }
