"""Fine-tuning sizing of a study: the precision of its arms' paired comparison gained per minute of compute.

The study compares arm a with arm b over (task, seed) pairs: the 95 % CI of the mean gap has
half-width t(0.975, n-1) * sd / sqrt(n) for n = S seeds x tasks pairs, where sd is the sd of the
paired differences a - b. Cheaper fine-tuning buys more seeds; better fine-tuning lowers sd. For
each fine-tuning setting of a small grid (keys of the study's ``evaluation.finetune``), this
fine-tunes every model on each of the study's tasks for k seeds through the repository's own
evaluation (``mcbio.evaluate.run.evaluate_task``), ``--parallel`` runs at a time with
``--threads`` threads each, as the study's evaluation stage runs them on 2 cores, and prints:

  run min    mean minutes of one fine-tuning run (inside evaluate_task), all models, tasks, seeds
  sd diff    sd of the paired differences a - b over the k x tasks (task, seed) pairs, in points
             (x100), with its 95 % CI (chi-square): with k = 3 it is a rough estimate
  prec/min   1 / (sd^2 x study wall minutes per (task, seed)): inverse variance of the mean gap
             bought per minute of the study's evaluation; higher is better
  then for a study of S seeds (n = S x tasks pairs), the same sd assumed:
  CI +-      the predicted 95 % CI half-width of the mean a - b gap over the pairs
  MDE        the minimal detectable effect: the smallest true mean gap the paired t-test at
             5 % detects with 80 % power (noncentral t, mcbio.results.stats)
  eval min   the study's evaluation wall time: models x tasks x S runs of (run min + the
             per-element overhead), --parallel at a time
  total min  eval min + the study's other steps (--other-min)

and, per setting, the fewest seeds whose CI half-width reaches --target and what they cost.
The tasks, seeds, fine-tuning settings, confidence and power are the study config's
(``--config``, ``--preset``, ``--set KEY=VALUE``); the number of models the study fine-tunes
is its arms, its base and (``report.random_init``) the random-init row.

    # the study's arms, after the study (or its pretraining steps) ran
    .venv/bin/python benchmarks/finetune_sizing.py --models runs/laptop_study/clm_detour/hf \\
        runs/laptop_study/mlm_control/hf --grid "" epochs=6 max_train_examples=706 --json sizing.json
    # in a minute or two on the smoke study's arms
    .venv/bin/python benchmarks/finetune_sizing.py --preset smoke --smoke \\
        --models runs/laptop_study-smoke/clm_detour/hf runs/laptop_study-smoke/mlm_control/hf
    # no fine-tuning: the same table from a finished study's records (one row per setting found)
    .venv/bin/python benchmarks/finetune_sizing.py --records results/records/laptop_study.jsonl \\
        --pair laptop_study-clm_detour laptop_study-mlm_control
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "experiments" / "laptop_study" / "config.yaml"
# --smoke: two tiny settings, 2 seeds, small dev/test sets: a minute or two on the smoke study's models.
SMOKE_GRID = ["max_train_examples=60,epochs=1,max_eval_examples=100", "max_train_examples=60,epochs=2,max_eval_examples=100"]
SMOKE_SEEDS = 2
# Seconds per evaluation element outside evaluate_task when no records time it: the laptop study's
# records at 823ccb4 (--records results/records/laptop_study.jsonl prints what they show).
DEFAULT_OVERHEAD_S = 11.0


@dataclass(frozen=True)
class Run:
    """One fine-tuning run: its primary test score (x100) and its minutes inside evaluate_task."""

    setting: str
    model: str
    task: str
    seed: int
    score: float
    minutes: float


# --------------------------------------------------------------------------- arithmetic


def paired_differences(runs: Sequence[Run], a: str, b: str) -> dict[tuple[str, int], float]:
    """(task, seed) -> a - b, over the pairs both models ran."""
    score = {(r.model, r.task, r.seed): r.score for r in runs}
    return {(t, s): score[a, t, s] - score[b, t, s] for (m, t, s) in sorted(score) if m == a and (b, t, s) in score}


def summarise(runs: Sequence[Run], a: str, b: str, study_seeds: Sequence[int], study_models: int, parallel: int,
              overhead_s: float, other_min: float, confidence: float, power: float, target: float) -> dict:
    """The sizing of one setting from its runs (see the module docstring for each quantity)."""
    from scipy import stats

    from mcbio.results.stats import ci_half_width, minimal_detectable_effect

    diffs = list(paired_differences(runs, a, b).values())
    if len(diffs) < 3:
        raise ValueError(f"{len(diffs)} (task, seed) pairs of {a} and {b}: at least 3 are needed for an sd")
    sd = statistics.stdev(diffs)
    df = len(diffs) - 1
    sd_ci = (sd * math.sqrt(df / stats.chi2.ppf((1 + confidence) / 2, df)),
             sd * math.sqrt(df / stats.chi2.ppf((1 - confidence) / 2, df)))
    by_task: dict[str, list[float]] = defaultdict(list)
    for r in runs:
        by_task[r.task].append(r.minutes)
    tasks = sorted(by_task)
    run_min = {t: statistics.fmean(v) for t, v in by_task.items()}
    # One seed of the study: every model on every task, each run plus the element's overhead, `parallel` at a time.
    seed_wall = study_models * sum(run_min[t] + overhead_s / 60 for t in tasks) / parallel

    def at(seeds: int) -> dict:
        n = seeds * len(tasks)
        return {"seeds": seeds, "pairs": n, "ci_half_width": ci_half_width(sd, n, confidence),
                "mde": minimal_detectable_effect(sd, n, 1 - confidence, power),
                "eval_min": seeds * seed_wall, "total_min": other_min + seeds * seed_wall}

    needed = next((s for s in range(2, 1001) if ci_half_width(sd, s * len(tasks), confidence) <= target), None)
    return {"pairs_measured": len(diffs), "mean_diff": statistics.fmean(diffs), "sd_diff": sd, "sd_diff_ci": sd_ci,
            "run_min": statistics.fmean(r.minutes for r in runs), "run_min_by_task": run_min, "tasks": tasks,
            "seed_wall_min": seed_wall,
            "precision_per_min": None if sd == 0 else len(tasks) / (sd ** 2 * seed_wall),
            "study": [at(s) for s in study_seeds], "target": at(needed) if needed else None}


def element_overhead_s(timestamps: Sequence[float], run_s: Sequence[float], parallel: int) -> float:
    """Seconds per element outside evaluate_task (process start, imports, submitit), from one evaluation
    stage's record times: ``parallel`` slots finish ``len - parallel`` runs between the first and last record."""
    if len(timestamps) <= parallel:
        raise ValueError(f"{len(timestamps)} runs: need more than --parallel={parallel} to time the stage")
    span = max(timestamps) - min(timestamps)
    return max(0.0, span * parallel / (len(timestamps) - parallel) - statistics.fmean(run_s))


# --------------------------------------------------------------------------- measuring


def _worker_init(threads: int, warm_with: str | None) -> None:
    import torch

    torch.set_num_threads(threads)
    if warm_with:  # a reused worker: its first run should not be the only one to pay for the imports
        from mcbio.evaluate.heads import load_encoder

        load_encoder(warm_with)  # the first from_pretrained of a process imports most of transformers


def _finetune(job: tuple) -> dict:
    """One fine-tuning run in a worker process."""
    from mcbio.evaluate.run import evaluate_task

    setting, label, path, task, ft, seed, shared_data = job
    res = evaluate_task(path, task, seed, ft, shared_data)
    return {"setting": setting, "model": label, "task": task.name, "seed": seed,
            "score": 100 * res["metrics"][res["primary_metric"]], "minutes": res["total_time_s"] / 60,
            "degenerate": res["degenerate"]}


def study_config(args, setting: str):
    """The study config with a grid setting (``key=value,...`` of ``evaluation.finetune``, or ``study``) applied."""
    from mcbio.config.loader import load_config
    from mcbio.config.study import StudyConfig

    keys = [kv if kv.startswith("evaluation.") else f"evaluation.finetune.{kv}"
            for kv in setting.split(",") if kv and setting != "study"]
    preset = [f"preset={args.preset}"] if args.preset else []
    return load_config(StudyConfig, args.config, [*preset, *args.set, *keys])


def measure(args) -> tuple[list[Run], list[str], dict[str, dict]]:
    """Fine-tune every grid setting x task x seed x model; return the runs, warnings and each
    setting's fine-tuning config per task."""
    import multiprocessing

    from mcbio.config.checks import Problems
    from mcbio.pipelines.evaluate import exported_run_name, resolve_suite

    labels = [exported_run_name(Path(p)) or Path(p).name for p in args.models]
    jobs, used = [], {}
    for setting in args.grid:
        cfg = study_config(args, setting)
        problems = Problems()
        specs, _ = resolve_suite(cfg.evaluation, cfg.paths.shared_data, problems, "evaluation.")
        problems.raise_if_any("the sizing's study config")
        seeds = list(cfg.evaluation.seeds[:args.seeds])
        seeds += [seeds[-1] + i + 1 for i in range(args.seeds - len(seeds))]
        used[setting] = {name: asdict(ft) for name, (_, ft) in specs.items()}
        for name, (task, ft) in specs.items():
            for seed in seeds:  # the models of one (task, seed) side by side: they share the machine's load
                jobs += [(setting, label, str(path), task, ft, seed, cfg.paths.shared_data)
                         for label, path in zip(labels, args.models)]
    print(f"{len(jobs)} fine-tuning runs, {args.parallel} at a time ...", file=sys.stderr, flush=True)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the workers inherit it before torch loads
    os.environ["TQDM_DISABLE"] = "1"
    # By default one fresh process per run, as each of the study's elements: what evaluate_task imports
    # lazily is timed in every run, as in the study's records.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.parallel, mp_context=ctx, initializer=_worker_init,
                             initargs=(args.threads, str(args.models[0]) if args.reuse_workers else None),
                             max_tasks_per_child=None if args.reuse_workers else 1) as pool:
        results = list(pool.map(_finetune, jobs))
    warnings = [f"{r['setting']} / {r['model']} / {r['task']} / seed {r['seed']}: DEGENERATE "
                f"({r['degenerate']})" for r in results if r["degenerate"]]
    return [Run(**{k: v for k, v in r.items() if k != "degenerate"}) for r in results], warnings, used


def runs_from_records(path: Path, parallel: int) -> tuple[list[Run], dict[str, float]]:
    """Every model's primary records in a study's records file, one setting per distinct fine-tuning caps;
    and each setting's element overhead from its records' times (one evaluation stage, ``parallel`` slots)."""
    from mcbio.results.records import one_fingerprint_per_model, read_records, unique_records

    runs, times = [], defaultdict(list)
    for r in unique_records(one_fingerprint_per_model(read_records(path))):
        if not r.extra.get("primary"):
            continue
        caps = {k: v for k, v in (r.extra.get("caps") or {}).items() if k != "full_sizes"}
        setting = ",".join(f"{k}={v}" for k, v in sorted(caps.items()) if v is not None) or "defaults"
        runs.append(Run(setting, r.model, r.task, r.seed, 100 * r.value, float(r.extra["total_time_s"]) / 60))
        times[setting].append((r.timestamp, float(r.extra["total_time_s"])))
    return runs, {k: element_overhead_s([t for t, _ in v], [s for _, s in v], parallel) for k, v in times.items()}


# --------------------------------------------------------------------------- output


def table(summaries: dict[str, dict], head: str, target: float, budget_min: float) -> str:
    """The sizing table: per setting its measured line, then the predicted study for each S."""
    lines = [head]
    for setting, s in summaries.items():
        lo, hi = s["sd_diff_ci"]
        prec = "inf" if s["precision_per_min"] is None else f"{s['precision_per_min']:.3f}"
        lines += ["", f"setting: {setting}",
                  f"  run min {s['run_min']:.2f} ({', '.join(f'{t} {m:.2f}' for t, m in s['run_min_by_task'].items())}); "
                  f"overhead {s['overhead_s']:.1f} s per run; mean diff {s['mean_diff']:+.2f}, sd diff {s['sd_diff']:.2f} "
                  f"[{lo:.2f}, {hi:.2f}] over {s['pairs_measured']} pairs; prec/min {prec}",
                  f"  {'S':>4s} {'pairs':>6s} {'CI +-':>6s} {'MDE':>6s} {'eval min':>9s} {'total min':>10s}"]
        lines += [f"  {p['seeds']:4d} {p['pairs']:6d} {p['ci_half_width']:6.2f} {p['mde']:6.2f} {p['eval_min']:9.0f} "
                  f"{p['total_min']:10.0f}" for p in s["study"]]
    lines += ["", f"Fewest seeds for a CI half-width <= {target:.2f} points (the same sd assumed):"]
    best = None
    for setting, s in summaries.items():
        t = s["target"]
        if t is None:
            lines.append(f"  {setting}: not within 1000 seeds")
            continue
        fits = t["total_min"] <= budget_min
        lines.append(f"  {setting}: S = {t['seeds']} ({t['pairs']} pairs): CI +-{t['ci_half_width']:.2f}, "
                     f"MDE {t['mde']:.2f}, evaluation {t['eval_min']:.0f} min, study {t['total_min']:.0f} min "
                     f"({'within' if fits else 'OVER'} the {budget_min:.0f}-min budget)")
        if fits and (best is None or t["total_min"] < summaries[best]["target"]["total_min"]):
            best = setting
    lines.append(f"Cheapest setting reaching the target within the budget: {best if best is not None else 'none'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", type=Path, help="model folders: arm a, arm b, then any other (timed only)")
    parser.add_argument("--records", type=Path, help="a study's records file instead of fine-tuning (with --pair)")
    parser.add_argument("--pair", nargs=2, metavar=("A", "B"), help="--records: the record names of arm a and arm b")
    parser.add_argument("--config", type=Path, default=STUDY, help="the study config (default: the laptop study's)")
    parser.add_argument("--preset", default=None)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="study config overrides")
    parser.add_argument("--grid", nargs="+", default=["study"], metavar="KEY=VALUE,...",
                        help="fine-tuning settings over the study's evaluation.finetune ('study': its own)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds measured per setting (the study's first k)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"a minute or two on the smoke study's models: --grid {' '.join(SMOKE_GRID)} "
                             f"--seeds {SMOKE_SEEDS} --reuse-workers")
    parser.add_argument("--study-seeds", nargs="+", type=int, default=[9, 12, 15, 18, 24], help="S values to predict")
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time, as the study's evaluation stage")
    parser.add_argument("--threads", type=int, default=1, help="threads per run, as the study's evaluation stage")
    parser.add_argument("--reuse-workers", action="store_true",
                        help="keep --parallel worker processes instead of one per run: faster, but the runs then "
                             "miss the imports each study element pays (run min too low by a few seconds)")
    parser.add_argument("--overhead-s", type=float, default=None,
                        help="seconds per evaluation element outside evaluate_task (default: from --records' times, "
                             f"else {DEFAULT_OVERHEAD_S:g}, what the laptop study's records show)")
    parser.add_argument("--other-min", type=float, default=41.0,
                        help="wall minutes of the study's steps before evaluation (laptop study: 71 - 30 min)")
    parser.add_argument("--budget-min", type=float, default=120.0, help="the whole study's wall-time budget")
    parser.add_argument("--target", type=float, default=0.6, help="CI half-width to reach, in points (x100)")
    parser.add_argument("--json", type=Path, help="write the runs and the summaries here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.grid, args.seeds, args.reuse_workers = SMOKE_GRID, SMOKE_SEEDS, True
    cfg = study_config(args, "study")
    models_in_study = 1 + len(cfg.arms) + int(cfg.report.random_init)
    confidence, power = cfg.report.confidence, cfg.report.power
    warnings: list[str] = []
    overheads: dict[str, float] = {}
    used: dict[str, dict] = {}
    if args.records:
        if not args.pair:
            parser.error("--records needs --pair A B (the arms' record names)")
        a, b = args.pair
        runs, overheads = runs_from_records(args.records, args.parallel)
        source = f"records {args.records}"
    else:
        if not args.models or len(args.models) < 2:
            parser.error("--models needs at least two folders (arm a, arm b), or use --records")
        from mcbio.pipelines.evaluate import exported_run_name

        a, b = (exported_run_name(p) or p.name for p in args.models[:2])
        runs, warnings, used = measure(args)
        source = f"measured: {args.seeds} seeds per setting, {args.parallel} runs at a time, {args.threads} thread(s) each"
    summaries = {}
    for setting in dict.fromkeys(r.setting for r in runs):
        overhead = args.overhead_s if args.overhead_s is not None else overheads.get(setting, DEFAULT_OVERHEAD_S)
        summaries[setting] = {"overhead_s": overhead, **summarise(
            [r for r in runs if r.setting == setting], a, b, args.study_seeds, models_in_study, args.parallel,
            overhead, args.other_min, confidence, power, args.target), "finetune": used.get(setting)}
    tasks = next(iter(summaries.values()))["tasks"]
    head = (f"Fine-tuning sizing of {a} - {b} over (task, seed) pairs ({source}; tasks {', '.join(tasks)}).\n"
            f"Predicted study: {models_in_study} models x {len(tasks)} tasks x S seeds, {args.parallel} runs at a time, "
            f"{args.other_min:.0f} min of other steps; {round(100 * confidence)} % CI, MDE at {round(100 * power)} % "
            "power. Scores, sd, CI and MDE in points (x100); times in wall minutes.")
    print(table(summaries, head, args.target, args.budget_min))
    for w in warnings:
        print("warning:", w)
    if args.json:
        args.json.write_text(json.dumps({"pair": [a, b], "source": source, "models_in_study": models_in_study,
                                         "parallel": args.parallel, "threads": args.threads, "other_min": args.other_min,
                                         "confidence": confidence, "power": power, "target": args.target,
                                         "budget_min": args.budget_min, "runs": [asdict(r) for r in runs],
                                         "settings": summaries, "warnings": warnings}, indent=1))

if __name__ == "__main__":
    main()
