"""A study's Table 4: per-task cells, the paired tests over tasks and over (task, seed) pairs, the compute line."""

from __future__ import annotations

import re

import pytest
from scipy import stats as scipy_stats

from mcbio.config.report import StudyTable
from mcbio.results.records import ResultRecord, ResultStore, RunRecord
from mcbio.results.study_tables import study_table_of, write_study_outputs

TASKS = ["quaero_emea", "quaero_medline", "morfitt"]
SEEDS = [42, 43, 44]
SPEC = StudyTable(experiment="st", a="st-a", b="st-b", base="st-base", label_a="detour", label_b="control",
                  label_base="base", tasks=TASKS)


def score(model: str, t: int, seed: int) -> float:
    """Distinct, seed-dependent scores: a beats b on two tasks out of three."""
    return {"st-a": 0.50, "st-b": 0.48, "st-base": 0.40}[model] + 0.05 * t + 0.003 * (seed - 42) * (t - 1) \
        - (0.04 if (model, t) == ("st-a", 2) else 0.0)


@pytest.fixture()
def store(tmp_path) -> ResultStore:
    store = ResultStore(tmp_path / "results")
    recs = [ResultRecord(model=m, task=task, seed=seed, metric="f1", value=score(m, t, seed), config_hash="h",
                         commit="c", extra={"primary": True, "total_time_s": 36.0})
            for m in ("st-a", "st-b", "st-base") for t, task in enumerate(TASKS) for seed in SEEDS]
    store.add(recs, "st")
    for model, cpu_h in (("st-base", 0.5), ("st-a", 0.25), ("st-b", 0.25)):
        store.add_run(RunRecord(model=model, config_hash="h", gpu_hours=0.0, num_gpus=0, wall_s=900.0, gpu_type="cpu",
                                commit="c", extra={"cpu_hours": cpu_h}), model)
    return store


def note(table: str, what: str) -> str:
    return next(line for line in table.splitlines() if what in line)


def numbers(line: str) -> list[float]:
    return [float(x) for x in re.findall(r"[+-]?\d+\.\d+", line)]


def test_the_paired_tests_are_scipys_over_tasks_and_over_task_seed_pairs(store):
    table = study_table_of(SPEC, store)
    a = {(t, s): 100 * score("st-a", i, s) for i, t in enumerate(TASKS) for s in SEEDS}
    b = {(t, s): 100 * score("st-b", i, s) for i, t in enumerate(TASKS) for s in SEEDS}
    mean_a = [sum(a[t, s] for s in SEEDS) / 3 for t in TASKS]
    mean_b = [sum(b[t, s] for s in SEEDS) / 3 for t in TASKS]
    over_tasks = scipy_stats.ttest_rel(mean_a, mean_b)
    line = note(table, "over 3 tasks")
    assert f"$p$ = {over_tasks.pvalue:.3f}" in line and f"$t(2)$ = {over_tasks.statistic:.2f}" in line
    assert "2/3 tasks won" in line
    keys = sorted(a)
    over_pairs = scipy_stats.ttest_rel([a[k] for k in keys], [b[k] for k in keys])
    line = note(table, "over 9 (task, seed) pairs")
    assert f"$p$ = {over_pairs.pvalue:.3f}" in line and f"$t(8)$ = {over_pairs.statistic:.2f}" in line
    assert "6/9 pairs won" in line
    assert "detour vs base, over 3 tasks" in table


def test_each_task_row_has_the_three_models_and_the_gap(store):
    table = study_table_of(SPEC, store)
    row = next(line for line in table.splitlines() if line.startswith("Medline &"))
    a, b, base = (100 * sum(score(m, 1, s) for s in SEEDS) / 3 for m in ("st-a", "st-b", "st-base"))
    cells = numbers(row)
    assert cells[0] == pytest.approx(a, abs=0.05) and cells[2] == pytest.approx(b, abs=0.05)
    assert cells[4] == pytest.approx(base, abs=0.05)
    assert f"+{a - b:.2f}" in row


def test_the_compute_line_reads_the_run_records_and_the_fine_tuning_times(store):
    line = note(study_table_of(SPEC, store), "Compute:")
    assert "base 0.50 CPU-h (15 min)" in line and "detour 0.25 CPU-h" in line and "control 0.25 CPU-h" in line
    assert "fine-tuning 27 runs, 0.27 h" in line


def test_without_reference_records_the_published_columns_are_empty_and_said_so(store, tmp_path):
    written = write_study_outputs(SPEC, store.root, tmp_path / "out")
    table = written[0].read_text()
    assert "no reference records" in table
    assert {p.suffix for p in written} == {".tex", ".png", ".pdf"}


def test_a_study_without_records_is_an_error_naming_the_models(tmp_path):
    with pytest.raises(ValueError, match="st-a, st-b"):
        study_table_of(SPEC, ResultStore(tmp_path / "empty"))


def test_the_overlap_report_lists_drops_per_group_and_hits_per_test_split():
    from mcbio.results.study_tables import overlap_table

    stats = {"ngram": 13, "split": "test",
             "documents": {"emea": {"in": 10, "dropped": 4, "tokens_in": 1000, "tokens_dropped": 250},
                           "articles": {"in": 5, "dropped": 0, "tokens_in": 500, "tokens_dropped": 0}},
             "tasks": {"quaero_emea": {"examples": 15, "examples_hit": 3, "share_hit": 0.2}},
             "dropped_by_task": {"quaero_emea": 4}}
    table = overlap_table(stats, "cap", "tab:x")
    assert r"group emea & 10 & 4 & 1000 & 250 & 25.0 \\" in table
    assert r"group articles & 5 & 0 & 500 & 0 & 0.0 \\" in table
    assert r"test split EMEA & 15 & 3 & -- & 4 & 20.0 \\" in table
