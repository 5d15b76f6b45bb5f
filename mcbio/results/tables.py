"""The paper's tables as LaTeX, built from result records and run records.

Scores are the mean over seeds of each (model, task)'s primary metric (the paper's
metric for that task, ``extra.primary``), scaled by ``scale`` (F1 in % by default).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Iterable, Sequence

from mcbio.results.carbon import carbon_footprint
from mcbio.results.latex import Latex, booktabs_table, fmt
from mcbio.results.records import ResultRecord, RunRecord, one_fingerprint_per_model, unique_records
from mcbio.results.stats import mean_std, min_max_score, paired_ttest, win_probability


def seed_values(records: Iterable[ResultRecord], primary_only: bool = True) -> dict[str, dict[str, list[float]]]:
    """model -> task -> values over seeds (one per seed, latest record wins).

    Records of two fingerprints under one model name are refused, never averaged together
    (:func:`~mcbio.results.records.one_fingerprint_per_model`; callers choose which to keep first).
    """
    out: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for rec in unique_records(one_fingerprint_per_model(records)):
        if primary_only and not rec.extra.get("primary", False):
            continue
        out[rec.model][rec.task].append(rec.value)
    return {m: dict(t) for m, t in out.items()}


def mean_scores(values: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    return {m: {t: statistics.fmean(v) for t, v in tasks.items()} for m, tasks in values.items()}


def _cell(vals: list[float] | None, scale: float):
    if not vals:
        return None
    mean, std = mean_std(vals)
    return (scale * mean, scale * std) if len(vals) > 1 else scale * mean


def _average(scores: dict[str, float], tasks: Sequence[str]) -> float | None:
    """Mean over ``tasks``; None unless the model has every one (a partial mean would mislead)."""
    if not tasks or any(t not in scores for t in tasks):
        return None
    return statistics.fmean(scores[t] for t in tasks)


def ablation_table(records: Iterable[ResultRecord], grid: str, cells: Sequence[str], caption: str, label: str,
                   primary_only: bool = True, scale: float = 100.0, decimals: int = 1,
                   decimal_comma: bool = False) -> str:
    """Table 1: rows = tasks (+ average), columns = grid cells (model ``<grid>.<cell>``)."""
    values = seed_values(records, primary_only)
    models = [f"{grid}.{c}" for c in cells]
    tasks = sorted({t for m in models for t in values.get(m, {})})
    means = mean_scores(values)
    rows = [(t, [_cell(values.get(m, {}).get(t), scale) for m in models]) for t in tasks]
    avgs = [_average(means.get(m, {}), tasks) for m in models]
    rows.append(("Average", [None if a is None else scale * a for a in avgs]))
    return booktabs_table(["Task"] + list(cells), rows, caption, label, decimals, decimal_comma,
                          midrule_before=(len(rows) - 1,))


def main_table(records: Iterable[ResultRecord], reference: Iterable[ResultRecord], models: Sequence[str],
               tasks: Sequence[str], caption: str, label: str, show_reference: bool = True,
               primary_only: bool = True, scale: float = 100.0, decimals: int = 1,
               decimal_comma: bool = False, reference_names: dict[str, str] | None = None) -> str:
    """Table 3: tasks x models, reproduced beside published, with Average, Min-Max and Win Probability.

    ``reference_names`` maps a reproduced model to its published name (e.g. base_clm_detour ->
    ModernCamemBERT-bio-base); its published column sits right after the reproduced one.
    """
    reference_names = reference_names or {}
    values = seed_values(records, primary_only)
    ref_values = seed_values(reference, primary_only=False)
    models = list(models) or sorted(set(values) | set(ref_values))
    columns: list[tuple[str, dict[str, list[float]]]] = []
    for m in models:
        if m in values:
            columns.append((m, values[m]))
        ref = reference_names.get(m, m)
        if ref in ref_values and (show_reference or m not in values):
            columns.append((f"{ref} (paper)", ref_values[ref]))
    if not columns:
        raise ValueError(f"main table: no records for models {', '.join(models) or '(any)'}")
    tasks = list(tasks) or sorted({t for _, tv in columns for t in tv})
    rows = [(t, [_cell(tv.get(t), scale) for _, tv in columns]) for t in tasks]
    col_means = [{t: statistics.fmean(v) for t, v in tv.items()} for _, tv in columns]
    agg_start = len(rows)
    rows.append(("Average", [None if (a := _average(cm, tasks)) is None else scale * a for cm in col_means]))
    complete = {name: {t: cm[t] for t in tasks} for (name, _), cm in zip(columns, col_means)
                if all(t in cm for t in tasks)}
    if len(complete) >= 2 and tasks:
        mm, wp = min_max_score(complete), win_probability(complete)
        rows.append(("Min-Max (%)", [100 * mm[n] if n in mm else None for n, _ in columns]))
        rows.append(("Win probability (%)", [100 * wp[n] if n in wp else None for n, _ in columns]))
    return booktabs_table(["Task"] + [n for n, _ in columns], rows, caption, label, decimals, decimal_comma,
                          midrule_before=(agg_start,))


def clm_mlm_table(records: Iterable[ResultRecord], pairs: Sequence[tuple[str, str, str]], caption: str, label: str,
                  confidence: float = 0.95, primary_only: bool = True, scale: float = 100.0, decimals: int = 1,
                  decimal_comma: bool = False) -> str:
    """Table 4: per pair (label, CLM model, MLM model), tasks x (CLM, MLM, delta) and the paired t-test.

    Pairs whose models have no records yet are left out (the table shows what has run).
    """
    values = seed_values(records, primary_only)
    means = mean_scores(values)
    rows: list[tuple[str, list]] = []
    breaks: list[int] = []
    notes: list[str] = []
    missing = [f"'{m}' (pair '{label_}')" for label_, a, b in pairs for m in (a, b) if m not in values]
    pairs = [(label_, a, b) for label_, a, b in pairs if a in values and b in values]
    if not pairs:
        raise ValueError(f"CLM vs MLM table: no records for {', '.join(missing)}")
    for label_, a, b in pairs:
        tasks = sorted(set(means[a]) & set(means[b]))
        breaks.append(len(rows))
        for t in tasks:
            rows.append((f"{label_}: {t}" if label_ else t,
                         [_cell(values[a][t], scale), _cell(values[b][t], scale), scale * (means[a][t] - means[b][t])]))
        if len(tasks) >= 2:
            cmp = paired_ttest({t: scale * means[a][t] for t in tasks}, {t: scale * means[b][t] for t in tasks}, confidence)
            notes.append(
                rf"{label_ or a}: mean gain {fmt(cmp.mean_diff, 2, decimal_comma)}, "
                rf"{round(100 * confidence)}\,\% CI [{fmt(cmp.ci_low, 2, decimal_comma)}, {fmt(cmp.ci_high, 2, decimal_comma)}], "
                rf"paired $t$ = {fmt(cmp.t_statistic, 2, decimal_comma)}, $p$ = {fmt(cmp.p_value, 3, decimal_comma)}, "
                rf"{cmp.wins}/{cmp.n_tasks} task wins.")
    return booktabs_table(["Task", "CLM detour", "MLM control", Latex(r"$\Delta$")], rows, caption, label, decimals,
                          decimal_comma, best_columns=[0, 1], midrule_before=tuple(breaks), notes=notes)


def carbon_table(runs: Iterable[RunRecord], tdp_w: float, pue: float, grid_g_per_kwh: float, caption: str,
                 label: str, decimal_comma: bool = False) -> str:
    """Table 5: one row per pretraining run, and the total."""
    rows = []
    total = 0.0
    for run in sorted(runs, key=lambda r: r.model):
        est = carbon_footprint(run.gpu_hours, tdp_w, pue, grid_g_per_kwh)
        total += run.gpu_hours
        rows.append((run.model, [str(run.num_gpus), fmt(est.gpu_hours, 1, decimal_comma),
                                 fmt(est.energy_kwh, 1, decimal_comma), fmt(est.co2_kg, 2, decimal_comma)]))
    est = carbon_footprint(total, tdp_w, pue, grid_g_per_kwh)
    rows.append(("Total", ["", fmt(est.gpu_hours, 1, decimal_comma), fmt(est.energy_kwh, 1, decimal_comma),
                           fmt(est.co2_kg, 2, decimal_comma)]))
    note = (rf"Energy = GPU-hours $\times$ {fmt(tdp_w, 0, decimal_comma)}\,W $\times$ PUE {fmt(pue, 2, decimal_comma)}; "
            rf"emissions at {fmt(grid_g_per_kwh, 0, decimal_comma)}\,g\,CO$_2$eq/kWh.")
    return booktabs_table(["Run", "GPUs", "GPU-hours", "Energy (kWh)", Latex(r"CO$_2$eq (kg)")], rows, caption, label,
                          bold_best=None, midrule_before=(len(rows) - 1,), notes=[note])
