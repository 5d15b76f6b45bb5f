"""A study's Table 4: arm a vs arm b per task (base model and random init beside), paired tests, the
comparison's power, gain figure, compute line.

The same builder serves the study's own report element (``<study>/tables``) and
``python -m mcbio.results report`` (``results/tables``, from the committed records), so the
two agree by construction.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from mcbio.files import read_json_object
from mcbio.results.latex import Latex, booktabs_table, escape, fmt, write_table
from mcbio.results.paper_tables import REPO, _mean_cell, _task_label, gain_series, of_table, signed, ttest_note
from mcbio.results.records import ResultRecord, RunRecord, one_fingerprint_per_model, training_runs
from mcbio.results.stats import PairedComparison, minimal_detectable_effect, paired_ttest
from mcbio.results.tables import mean_scores, seed_values, unique_records


def seed_scores(records: Iterable[ResultRecord]) -> dict[str, dict[str, dict[int, float]]]:
    """model -> task -> seed -> primary score (latest record wins)."""
    out: dict[str, dict[str, dict[int, float]]] = {}
    for r in unique_records(records):
        if r.extra.get("primary", False):
            out.setdefault(r.model, {}).setdefault(r.task, {})[r.seed] = r.value
    return out


def pair_scores(scores: Mapping[str, Mapping[str, Mapping[int, float]]], a: str, b: str,
                tasks: Sequence[str], scale: float) -> tuple[dict[str, float], dict[str, float]]:
    """``a`` and ``b`` on every (task, seed) both have, keyed ``task/seed``: the paired-over-runs test."""
    xa, xb = {}, {}
    for t in tasks:
        for seed in sorted(set(scores.get(a, {}).get(t, {})) & set(scores.get(b, {}).get(t, {}))):
            xa[f"{t}/{seed}"] = scale * scores[a][t][seed]
            xb[f"{t}/{seed}"] = scale * scores[b][t][seed]
    return xa, xb


def llm_compute(llm: Mapping[str, Mapping] | None, decimal_comma: bool) -> str:
    """The curation's LLM steps (the ``llm`` block of its statistics): model, engine, tokens, time."""
    from mcbio.llm.accounting import engine_steps

    parts = []
    for step, u in sorted(engine_steps(llm).items()):
        what = {"llm_annotate": "annotation", "llm_extract": "extraction"}.get(step, step)
        parts.append(f"{what} {escape(str(u.get('model') or ''))} on {escape(u['backend'])}, {u['prompts']} prompts, "
                     f"{fmt(u['prompt_tokens'] / 1e3, 0, decimal_comma)}k prompt + "
                     f"{fmt(u['generated_tokens'] / 1e3, 1, decimal_comma)}k generated tokens in "
                     f"{fmt((u['seconds'] + u['engine_start_s']) / 60, 1, decimal_comma)} min "
                     f"({fmt(u.get('cpu_hours', 0.0), 2, decimal_comma)} CPU-h"
                     + (f", {fmt(u['gpu_hours'], 2, decimal_comma)} GPU-h" if u.get("gpu_hours") else "") + ")")
    return "; LLM " + ", ".join(parts) if parts else ""


def compute_line(runs: Iterable[RunRecord], records: Iterable[ResultRecord], models: Mapping[str, str],
                 decimal_comma: bool, llm: Mapping[str, Mapping] | None = None) -> str:
    """CPU-hours of each model's pretraining (its current training's launches, :func:`training_runs`), of the
    curation's LLM steps (its statistics' ``llm`` block) and of the fine-tuning runs (records)."""
    by_model = {r.model: r for r in training_runs(runs)}
    parts = []
    for label, model in models.items():
        run = by_model.get(model)
        if run is not None:
            cpu_h = float(run.extra.get("cpu_hours", 0.0))
            parts.append(f"{escape(label)} {fmt(cpu_h, 2, decimal_comma)} CPU-h ({fmt(run.wall_s / 60, 0, decimal_comma)} min)")
    runs_done = [r for r in unique_records(records) if r.extra.get("primary") and r.model in models.values()]
    ft_h = sum(float(r.extra.get("total_time_s", 0.0)) for r in runs_done) / 3600
    text = "Compute: pretraining " + (", ".join(parts) if parts else "not recorded")
    text += llm_compute(llm, decimal_comma)
    text += f"; fine-tuning {len(runs_done)} runs, {fmt(ft_h, 2, decimal_comma)} h of run time (no GPU)."
    return text


def power_note(cmp: PairedComparison, power: float, labels: tuple[str, str], decimal_comma: bool) -> str:
    """What the (task, seed) comparison could detect: its CI half-width and minimal detectable effect."""
    dc = decimal_comma
    half = (cmp.ci_high - cmp.ci_low) / 2
    mde = minimal_detectable_effect(cmp.std_diff, cmp.n_tasks, 1 - cmp.confidence, power)
    return (rf"Power over the {cmp.n_tasks} (task, seed) pairs: the {escape(labels[0])} $-$ {escape(labels[1])} "
            rf"differences have sd {fmt(cmp.std_diff, 2, dc)} pp, so the {round(100 * cmp.confidence)}\,\% CI "
            rf"half-width is {fmt(half, 2, dc)} pp; the smallest true mean gap a two-sided paired $t$-test at "
            rf"{fmt(100 * (1 - cmp.confidence), 0, dc)}\,\% detects with {round(100 * power)}\,\% power "
            rf"(minimal detectable effect) is {fmt(mde, 2, dc)} pp.")


def random_init_note(means: Mapping[str, Mapping[str, float]], models: Mapping[str, str],
                     labels: Mapping[str, str], order: Sequence[str], scale: float, decimal_comma: bool) -> str:
    """How much each model gains over the random-init floor, mean over the table's tasks."""
    floor = models["random_init"]
    lacking = [t for t in order if t not in means.get(floor, {})]
    if lacking:
        return (f"No gain over {escape(labels['random_init'])}: no records of {escape(floor)} on "
                f"{', '.join(_task_label(t) for t in lacking)}.")
    gains = []
    for k in ("a", "b", "base"):
        if all(t in means.get(models[k], {}) for t in order):
            gain = scale * statistics.fmean(means[models[k]][t] - means[floor][t] for t in order)
            gains.append(f"{escape(labels[k])} {signed(gain, 2, decimal_comma)} pp")
    return (f"Gain over {escape(labels['random_init'])} (the base architecture and tokenizer with random weights, "
            f"fine-tuned alike), mean over {len(order)} tasks: {', '.join(gains)}.")


def _setting(params: Mapping) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in sorted(params.items()))


def selection_note(records: Iterable[ResultRecord], models: Mapping[str, str], labels: Mapping[str, str],
                   order: Sequence[str]) -> str:
    """The fine-tuning settings each model used per task: chosen on the validation split by
    ``finetune.hp_search`` (``extra.hp_search`` of its records), or the one fixed setting."""
    chosen: dict[str, dict[str, set[str]]] = {}
    searched = False
    for r in unique_records(records):
        if r.extra.get("primary") and r.model in models.values() and r.task in order:
            params = r.extra.get("hp_search")
            searched |= params is not None
            chosen.setdefault(r.model, {}).setdefault(r.task, set()).add(_setting(params) if params else "fixed")
    if not searched:
        return "Fine-tuning settings: one fixed setting for every model (no search on the validation split)."
    parts = []
    for key, model in models.items():
        tasks = chosen.get(model)
        if tasks:
            cells = {t: " / ".join(sorted(tasks[t])) for t in order if t in tasks}
            text = (next(iter(cells.values())) + " on every task" if len(set(cells.values())) == 1
                    else ", ".join(f"{_task_label(t)} {v}" for t, v in cells.items()))
            parts.append(f"{escape(labels[key])} {escape(text)}")
    return "Fine-tuning settings chosen per model and task on the validation split (ties to the lower lr): " + \
        "; ".join(parts) + "."


def study_table(records: Sequence[ResultRecord], reference: Sequence[ResultRecord], runs: Sequence[RunRecord],
                models: Mapping[str, str], labels: Mapping[str, str], paper: tuple[str, str], tasks: Sequence[str],
                caption: str, label: str, confidence: float = 0.95, decimal_comma: bool = False,
                scale: float = 100.0, power: float = 0.8, llm: Mapping[str, Mapping] | None = None) -> str:
    """Per task: a, b, base and (``models["random_init"]``, when set) the random-init floor, mean +- std
    over seeds; a - b; the published pair's a, b, a - b. Under it the paired tests, the power of the
    (task, seed) comparison at ``power``, each model's gain over random init and the compute line."""
    dc = decimal_comma
    values = seed_values(records)
    means = mean_scores(values)
    a, b, base = models["a"], models["b"], models["base"]
    shown = [k for k in ("a", "b", "base", "random_init") if models.get(k)]
    missing = [m for m in (a, b) if m not in means]
    if missing:
        raise ValueError(f"study table: no records for {', '.join(missing)}")
    # The published pair comes from the store's reference records; a store without them
    # (a study writing elsewhere) shows the study alone.
    refs = of_table(reference, "3") + of_table(reference, "4")
    published = mean_scores(seed_values(refs, False))
    pa, pb = paper
    order = [t for t in tasks if t in means[a] and t in means[b]]
    rows: list[tuple[str, list]] = []
    for t in order:
        pub = published.get(pa, {}).get(t), published.get(pb, {}).get(t)
        rows.append((_task_label(t), [
            *(_mean_cell(values.get(models[k], {}).get(t), scale) for k in shown),
            signed(scale * (means[a][t] - means[b][t]), 2, dc),
            None if pub[0] is None else scale * pub[0], None if pub[1] is None else scale * pub[1],
            None if None in pub else signed(scale * (pub[0] - pub[1]), 1, dc)]))

    def avg(model: str, src: Mapping) -> float | None:
        got = [src.get(model, {}).get(t) for t in order]
        return None if not got or None in got else scale * statistics.fmean(got)

    row_avg = [avg(models[k], means) for k in shown]
    paper_avg = [avg(pa, published), avg(pb, published)]
    rows.append(("Average", [*row_avg, signed(row_avg[0] - row_avg[1], 2, dc), *paper_avg,
                             None if None in paper_avg else signed(paper_avg[0] - paper_avg[1], 1, dc)]))
    notes = []
    if len(order) >= 2:
        notes.append(ttest_note(f"{labels['a']} vs {labels['b']}, over {len(order)} tasks",
                                {t: scale * means[a][t] for t in order}, {t: scale * means[b][t] for t in order},
                                confidence, dc))
    xa, xb = pair_scores(seed_scores(records), a, b, order, scale)
    if len(xa) >= 2:
        notes.append(ttest_note(f"{labels['a']} vs {labels['b']}, over {len(xa)} (task, seed) pairs", xa, xb,
                                confidence, dc, unit="pairs"))
        cmp = paired_ttest(xa, xb, confidence)
        if cmp.std_diff > 0:
            notes.append(power_note(cmp, power, (labels["a"], labels["b"]), dc))
    if base in means and all(t in means[base] for t in order) and len(order) >= 2:
        notes.append(ttest_note(f"{labels['a']} vs {labels['base']}, over {len(order)} tasks",
                                {t: scale * means[a][t] for t in order}, {t: scale * means[base][t] for t in order},
                                confidence, dc))
    if "random_init" in shown and order:
        notes.append(random_init_note(means, models, labels, order, scale, dc))
    shown_models = {labels[k]: models[k] for k in ("base", "a", "b", "random_init") if k in shown}
    notes.append(selection_note(records, {k: models[k] for k in shown}, labels, order))
    notes.append(compute_line(runs, records, shown_models, dc, llm))
    if not refs:
        notes.append(r"Published columns empty: this results store has no reference records "
                     r"(\texttt{python -m mcbio.results reference}).")
    header = ["Task", *(labels[k] for k in shown), Latex(r"$\Delta$"),
              f"{labels['a']} (paper)", f"{labels['b']} (paper)", Latex(r"$\Delta$ (paper)")]
    return booktabs_table(header, rows, caption, label, decimals=1, decimal_comma=dc,
                          best_columns=list(range(len(shown))), midrule_before=(len(rows) - 1,), notes=notes)


def overlap_table(stats: Mapping, caption: str, label: str, decimal_comma: bool = False) -> str:
    """The decontamination report of a study's curation (``merge_overlap_reports``): per mix group,
    documents dropped or cut and tokens removed; per test split, the examples the pretraining text
    touched before decontamination and still touches after it. Reports of the former rule (any
    shared n-gram dropped the document) show "--" where they recorded nothing."""
    dc = decimal_comma
    rows: list[tuple[str, list]] = []
    for group, d in sorted(stats["documents"].items()):
        removed = d["tokens_dropped"] + d.get("tokens_cut", 0)
        kept = 1 - removed / d["tokens_in"] if d["tokens_in"] else 1.0
        rows.append((f"group {group}", [str(d["in"]), str(d["dropped"]), str(d.get("cut", 0)), str(d["tokens_in"]),
                                        str(removed), fmt(100 * kept, 2, dc)]))
    n_groups = len(rows)

    def count(value) -> str:
        return "--" if value is None else str(value)

    rows.append((Latex(r"\emph{test split}"), ["examples", "hit", "colliding", "overlapping after",
                                                "boilerplate only", r"boilerplate \%"]))
    for task, t in sorted(stats["tasks"].items()):
        share = t.get("boilerplate_share_max")
        rows.append((f"test split {_task_label(task)}", [
            str(t["examples"]), str(t["examples_hit"]), count(t.get("examples_colliding", t["examples_hit"])),
            count(t.get("examples_overlapping_after")), count(t.get("examples_boilerplate_only")),
            "--" if share is None else fmt(100 * share, 1, dc)]))
    n = stats["ngram"]
    rules = stats.get("rules")
    if rules:
        seen = stats.get("boilerplate") or {}
        found = (f" ({seen['boilerplate_ngrams']} of the {seen['test_ngrams_in_corpus']} test {n}-grams found in the "
                 f"{seen['documents_counted']} pretraining documents)") if seen else ""
        rule = (f"A test {n}-gram in more than {rules['max_document_frequency']} pretraining documents is boilerplate "
                f"and ignored{found}; every other shared {n}-gram is cut out with {rules['window_chars']} characters "
                f"on each side, pieces under {rules['min_piece_chars']} characters go too, and a document cut into "
                f"more than {rules['max_pieces']} pieces is dropped (GPT-3's rule, Brown et al. 2020, appendix C).")
    else:
        rule = f"Former rule: a document sharing any {n}-gram with a test example was dropped whole."
    note = (f"{n}-grams of lower-cased words, {escape(stats['split'])} splits. {rule} Groups: documents in, dropped, "
            "cut; tokens in, removed (dropped or cut), share of tokens kept. Test splits: examples; sharing a "
            f"{n}-gram with the pretraining text before decontamination (hit), a non-boilerplate one (colliding); "
            f"sharing a non-boilerplate {n}-gram with the kept text (overlapping after: a long verbatim overlap), "
            "only boilerplate ones; largest share of one example's n-grams that are boilerplate.")
    return booktabs_table(["", "documents", "dropped", "cut", "tokens", "tokens removed", Latex(r"\% tokens kept")],
                          rows, caption, label, bold_best=None, midrule_before=(n_groups, n_groups + 1),
                          notes=[note], column_align="lrrrrrr")


def study_records(spec, store, keep: Mapping[str, str] | None = None) -> list[ResultRecord]:
    """The study's evaluation records, one fingerprint per model (``keep``: model -> fingerprint prefix
    when a model name has records of several weights; see :func:`one_fingerprint_per_model`)."""
    return one_fingerprint_per_model(store.records(spec.experiment), keep)


def study_table_of(spec, store, confidence: float = 0.95, decimal_comma: bool = False,
                   keep: Mapping[str, str] | None = None) -> str:
    """The table of ``spec`` (a :class:`mcbio.config.report.StudyTable`) from the store's records."""
    models = {"a": spec.a, "b": spec.b, "base": spec.base, "random_init": spec.random_init}
    labels = {"a": spec.label_a, "b": spec.label_b, "base": spec.label_base, "random_init": spec.label_random_init}
    caption = (f"Study {spec.experiment}: {spec.label_a} vs {spec.label_b} from the same base model (same data, "
               "order and budget), test sets, mean over seeds; the published Base pair beside it")
    stats = read_json_object(curation_stats_path(store, spec.experiment)) or {}
    return study_table(study_records(spec, store, keep), store.reference_records(), store.runs(), models, labels,
                       (spec.paper_a, spec.paper_b), spec.tasks, caption, f"tab:{spec.experiment}", confidence,
                       decimal_comma, power=spec.power, llm=stats.get("llm"))


def study_figure(spec, store, figures_dir: str | Path, keep: Mapping[str, str] | None = None) -> list[Path]:
    """``gain_<experiment>.png/.pdf``: a minus b per task, the study's and the published pair's."""
    from mcbio.results.figures import gain_comparison_figure
    from mcbio.results.paper import TASK_LABELS

    series = gain_series(store.reference_records(), study_records(spec, store, keep),
                         (spec.a, spec.b, spec.paper_a, spec.paper_b), spec.tasks)
    if REPO in series:
        series[spec.experiment] = series.pop(REPO)
    if spec.experiment not in series:
        raise ValueError(f"study figure: no records of both {spec.a} and {spec.b} in '{spec.experiment}'")
    return gain_comparison_figure(series, TASK_LABELS, f"{spec.experiment}: {spec.label_a} minus {spec.label_b}, "
                                  "per task", Path(figures_dir) / f"gain_{spec.experiment}")


def curation_stats_path(store, experiment: str) -> Path:
    """Where a study keeps its curation statistics in the results store (its overlap report's input)."""
    return Path(store.root) / "curation" / f"{experiment}.json"


def study_overlap_of(spec, store, decimal_comma: bool = False) -> str:
    import json

    path = curation_stats_path(store, spec.experiment)
    if not path.is_file():
        raise FileNotFoundError(f"no curation statistics of '{spec.experiment}' at {path}")
    stats = json.loads(path.read_text(encoding="utf-8"))
    if "decontamination" not in stats:
        raise ValueError(f"{path}: the curation ran without decontamination")
    return overlap_table(stats["decontamination"], f"Study {spec.experiment}: overlap of the pretraining mix with "
                         "the evaluation test splits, before and after decontamination (before mixing)",
                         f"tab:overlap_{spec.experiment}", decimal_comma)


def write_study_outputs(spec, results_dir: str | Path, out_dir: str | Path, confidence: float = 0.95,
                        decimal_comma: bool = False, keep: Mapping[str, str] | None = None) -> list[Path]:
    """The study's table, overlap table (when its curation statistics are in the store) and gain figure
    under ``out_dir`` (its own report element; ``keep`` as in :func:`study_records`)."""
    from mcbio.results.records import ResultStore

    store = ResultStore(results_dir)
    out = Path(out_dir)
    written = [write_table(study_table_of(spec, store, confidence, decimal_comma, keep),
                           out / f"table4_{spec.experiment}.tex")]
    if curation_stats_path(store, spec.experiment).is_file():
        written.append(write_table(study_overlap_of(spec, store, decimal_comma), out / f"overlap_{spec.experiment}.tex"))
    return written + study_figure(spec, store, out, keep)
