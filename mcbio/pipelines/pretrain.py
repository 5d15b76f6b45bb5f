"""Pretraining experiment: pretrain -> HF export -> fine-tuning evaluation -> LaTeX table.

Every stage is resumable: pretraining autoresumes from the run's checkpoints, the
export is rewritten, evaluation skips (task, seed) records already written.
"""

from __future__ import annotations

import logging
from pathlib import Path

from composer.utils import dist

from mcbio.config.loader import config_hash, to_yaml
from mcbio.config.schema import PretrainRunConfig
from mcbio.evaluate.run import evaluate_task
from mcbio.model.export import export_hf
from mcbio.results.latex import results_table, write_table
from mcbio.results.records import ResultRecord, append_records, git_commit, read_records
from mcbio.tracking import wandb_run
from mcbio.train.pretrain import pretrain

log = logging.getLogger(__name__)


def run_evaluations(cfg: PretrainRunConfig, out_dir: Path, model_path: Path, run_hash: str) -> list[ResultRecord]:
    results_dir = out_dir / "results"
    done = {(r.task, r.seed) for r in read_records(results_dir)} if results_dir.exists() else set()
    commit = git_commit()
    new: list[ResultRecord] = []
    with wandb_run(cfg, out_dir, "evaluate") as wb:
        for task in cfg.evaluation.tasks:
            for seed in cfg.evaluation.seeds:
                if (task, seed) in done:
                    log.info("skip %s seed %d: record exists", task, seed)
                    continue
                res = evaluate_task(str(model_path), task, seed, cfg.evaluation.finetune, cfg.paths.shared_data)
                extra = {"best_epoch": res["best_epoch"], "train_time_s": round(res["train_time_s"], 2),
                         "primary": False, "run": cfg.name}
                records = [
                    ResultRecord(model=cfg.name, task=task, seed=seed, metric=name, value=value,
                                 config_hash=run_hash, commit=commit,
                                 extra={**extra, "primary": name == res["primary_metric"]})
                    for name, value in res["metrics"].items()
                ]
                append_records(results_dir / f"{task}.jsonl", records)
                new.extend(records)
                log.info("%s seed %d: %s", task, seed, res["metrics"])
                if wb is not None:
                    wb.log({f"eval/{task}/{k}": v for k, v in res["metrics"].items()} | {"seed": seed})
    return new


def write_report(cfg: PretrainRunConfig, out_dir: Path) -> Path:
    records = read_records(out_dir / "results")
    table = results_table(records, caption=f"Fine-tuning results of {cfg.name} (test set, mean over seeds)",
                          label=f"tab:{cfg.name}", decimal_comma=cfg.report.decimal_comma)
    return write_table(table, out_dir / "tables" / "results.tex")


def run_pretraining_experiment(cfg: PretrainRunConfig) -> dict:
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(to_yaml(cfg), encoding="utf-8")
    run_hash = config_hash(cfg)
    summary: dict = {"out_dir": str(out_dir), "config_hash": run_hash}
    hf_dir = out_dir / "hf"
    if "pretrain" in cfg.stages:
        hf_model, tokenizer, _ = pretrain(cfg, out_dir)
        if "export" in cfg.stages and dist.get_global_rank() == 0:
            export_hf(hf_model, tokenizer, hf_dir)
            summary["hf"] = str(hf_dir)
    if dist.get_global_rank() != 0:
        return summary
    if "evaluate" in cfg.stages and cfg.evaluation.enabled:
        if not (hf_dir / "config.json").is_file():
            raise FileNotFoundError(f"no exported model at {hf_dir}: run the 'pretrain' and 'export' stages first")
        summary["new_records"] = len(run_evaluations(cfg, out_dir, hf_dir, run_hash))
    if "report" in cfg.stages and cfg.report.enabled and (out_dir / "results").exists():
        summary["table"] = str(write_report(cfg, out_dir))
    return summary
