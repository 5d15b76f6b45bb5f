"""A study's Table 4: per-task cells, the random-init floor, the paired tests over tasks and over (task, seed)
pairs, the power of the comparison, the compute line."""

from __future__ import annotations

import re

import pytest
from scipy import stats as scipy_stats

from mcbio.config.report import StudyTable
from mcbio.results.records import ResultRecord, ResultStore, RunRecord
from mcbio.results.study_tables import study_table_of, write_study_outputs

TASKS = ["quaero_emea", "quaero_medline", "morfitt"]
SEEDS = [42, 43, 44]
SPEC = StudyTable(experiment="st", a="st-a", b="st-b", base="st-base", random_init="st-base-random-init",
                  label_a="detour", label_b="control", label_base="base", tasks=TASKS)
MODELS = ("st-a", "st-b", "st-base", "st-base-random-init")


def score(model: str, t: int, seed: int) -> float:
    """Distinct, seed-dependent scores: a beats b on two tasks out of three.

    So a - b is +2 pp on tasks 0 and 1 and -2 pp on task 2 at every seed: over the 9 (task, seed)
    pairs the differences have mean 2/3 pp and sd exactly 2 pp (squares 6 * (4/3)^2 + 3 * (8/3)^2 = 32
    over 8 degrees of freedom). Over random init: a gains (20 + 20 + 16) / 3 = 18.67 pp, b 18, base 10.
    """
    return {"st-a": 0.50, "st-b": 0.48, "st-base": 0.40, "st-base-random-init": 0.30}[model] + 0.05 * t \
        + 0.003 * (seed - 42) * (t - 1) - (0.04 if (model, t) == ("st-a", 2) else 0.0)


@pytest.fixture()
def store(tmp_path) -> ResultStore:
    store = ResultStore(tmp_path / "results")
    recs = [ResultRecord(model=m, task=task, seed=seed, metric="f1", value=score(m, t, seed), config_hash="h",
                         commit="c", extra={"primary": True, "total_time_s": 36.0})
            for m in MODELS for t, task in enumerate(TASKS) for seed in SEEDS]
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


def test_each_task_row_has_the_four_models_and_the_gap(store):
    table = study_table_of(SPEC, store)
    assert "Task & detour & control & base & random init & $\\Delta$ &" in table
    row = next(line for line in table.splitlines() if line.startswith("Medline &"))
    a, b, base, floor = (100 * sum(score(m, 1, s) for s in SEEDS) / 3 for m in MODELS)
    cells = numbers(row)
    assert cells[0] == pytest.approx(a, abs=0.05) and cells[2] == pytest.approx(b, abs=0.05)
    assert cells[4] == pytest.approx(base, abs=0.05) and cells[6] == pytest.approx(floor, abs=0.05) == 35.0
    assert f"+{a - b:.2f}" in row
    average = numbers(next(line for line in table.splitlines() if line.startswith("Average &")))
    assert average[3] == pytest.approx(100 * (0.30 + 0.05), abs=0.05)  # random init: 30, 35, 40 (+ seed terms 0)


def test_the_notes_give_each_models_gain_over_random_init(store):
    line = note(study_table_of(SPEC, store), "Gain over random init")
    assert "mean over 3 tasks: detour +18.67 pp, control +18.00 pp, base +10.00 pp." in line


def test_without_a_random_init_model_there_is_no_floor_column_and_a_missing_one_is_said(store, tmp_path):
    import dataclasses

    table = study_table_of(dataclasses.replace(SPEC, random_init=""), store)
    assert "random init" not in table and "& base & $\\Delta$ &" in table
    table = study_table_of(dataclasses.replace(SPEC, random_init="st-nope"), store)
    assert "No gain over random init: no records of st-nope on EMEA, Medline, MORFITT." in table


def test_the_power_line_gives_the_pairs_ci_half_width_and_minimal_detectable_effect(store):
    import dataclasses
    import math

    line = note(study_table_of(SPEC, store), "Power over the 9 (task, seed) pairs")
    # sd 2 pp over 9 pairs (see score): half-width t(0.975, 8) * 2 / 3 = 2.306 * 0.667 = 1.537.
    assert "differences have sd 2.00 pp" in line and "95\\,\\% CI half-width is 1.54 pp" in line
    mde = float(re.search(r"minimal detectable effect\) is (\d+\.\d+) pp", line).group(1))

    def power(effect: float) -> float:  # two-sided paired t-test, 8 df, sd 2, 9 pairs: scipy's noncentral t
        crit, nc = scipy_stats.t.ppf(0.975, 8), effect * math.sqrt(9) / 2.0
        return scipy_stats.nct.sf(crit, 8, nc) + scipy_stats.nct.sf(crit, 8, -nc)

    # The printed effect (2 decimals) is where the power crosses 80 %; the normal approximation
    # (z_0.975 + z_0.8) * 2 / 3 = 1.87 pp would overstate the study's sensitivity.
    assert power(mde - 0.005) < 0.80 < power(mde + 0.005) and mde > 1.87
    stricter = note(study_table_of(dataclasses.replace(SPEC, power=0.9), store), "Power over")
    assert "with 90\\,\\% power" in stricter
    assert float(re.search(r"effect\) is (\d+\.\d+) pp", stricter).group(1)) > mde


def test_the_compute_line_reads_the_run_records_and_the_fine_tuning_times(store):
    line = note(study_table_of(SPEC, store), "Compute:")
    assert "base 0.50 CPU-h (15 min)" in line and "detour 0.25 CPU-h" in line and "control 0.25 CPU-h" in line
    assert "fine-tuning 36 runs, 0.36 h" in line  # 4 models x 3 tasks x 3 seeds, random init included
    assert "LLM" not in line  # no curation statistics in the store


def test_the_compute_line_counts_every_launch_of_the_current_training_only(store):
    def launch(cpu_h: float, wall_s: float, resumed_at: int) -> None:
        store.add_run(RunRecord(model="st-a", config_hash="h2", gpu_hours=0.0, num_gpus=0, wall_s=wall_s,
                                gpu_type="cpu", commit="c", extra={"cpu_hours": cpu_h, "resumed_at_batch": resumed_at}),
                      "st-a")

    # st-a trained again from scratch, preempted at batch 120 and resumed, then relaunched once more
    # after it had finished (a re-export): its cost is those three launches, not the earlier training.
    launch(0.5, 1200.0, 0)
    launch(0.3, 600.0, 120)
    launch(0.01, 60.0, 300)
    line = note(study_table_of(SPEC, store), "Compute:")
    assert "detour 0.81 CPU-h (31 min)" in line and "base 0.50 CPU-h (15 min)" in line


def test_the_compute_line_gives_the_curations_llm_steps(store):
    import json

    from mcbio.results.study_tables import curation_stats_path

    path = curation_stats_path(store, "st")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"llm": {"llm_annotate": {
        "backend": "vllm", "model": "smollm2-135m-instruct", "prompts": 812, "prompt_tokens": 634000,
        "generated_tokens": 20300, "seconds": 420.0, "engine_start_s": 150.0, "cpu_hours": 0.3167, "gpu_hours": 0.0},
        # The rules backend is no LLM: counted in the statistics, but no LLM compute to state.
        "llm_extract": {"backend": "rules", "model": None, "prompts": 1520, "prompt_tokens": 0,
                        "generated_tokens": 0, "seconds": 0.34, "engine_start_s": 0.0, "cpu_hours": 0.0002}}}))
    line = note(study_table_of(SPEC, store), "Compute:")
    assert ("LLM annotation smollm2-135m-instruct on vllm, 812 prompts, 634k prompt + 20.3k generated tokens "
            "in 9.5 min (0.32 CPU-h)") in line
    assert "extraction" not in line and "rules" not in line


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
    assert r"group emea & 10 & 4 & 0 & 1000 & 250 & 75.00 \\" in table
    assert r"group articles & 5 & 0 & 0 & 500 & 0 & 100.00 \\" in table
    assert r"test split EMEA & 15 & 3 & 3 & -- & -- & -- \\" in table


def test_a_model_with_records_of_two_weights_stops_the_table_unless_one_is_kept(store):
    import dataclasses

    # st-a retrained under the same name: new records of other weights, 10 pp higher.
    again = [dataclasses.replace(r, value=r.value + 0.10, model_fingerprint="f" * 64)
             for r in store.records("st") if r.model == "st-a"]
    store.add(again, "st")
    with pytest.raises(ValueError, match="model 'st-a' has records of 2 different weights"):
        study_table_of(SPEC, store)
    new = numbers(next(line for line in study_table_of(SPEC, store, keep={"st-a": "ffff"}).splitlines()
                       if line.startswith("Medline &")))
    old = numbers(next(line for line in study_table_of(SPEC, store, keep={"st-a": "none"}).splitlines()
                       if line.startswith("Medline &")))
    assert new[0] == pytest.approx(old[0] + 10.0, abs=0.05)


def test_the_notes_say_each_models_chosen_settings_per_task(tmp_path):
    store = ResultStore(tmp_path / "results")
    chosen = {"st-a": 1e-4, "st-b": 3e-4, "st-base": 1e-4, "st-base-random-init": 1e-3}

    def lr(model: str, task: str) -> float:
        return 3e-4 if (model, task) == ("st-a", "morfitt") else chosen[model]
    store.add([ResultRecord(model=m, task=task, seed=seed, metric="f1", value=score(m, t, seed), config_hash="h",
                            commit="c", extra={"primary": True, "hp_search": {"lr": lr(m, task)}})
               for m in MODELS for t, task in enumerate(TASKS) for seed in SEEDS], "st")
    line = note(study_table_of(SPEC, store), "chosen per model and task")
    assert "detour EMEA lr 0.0001, Medline lr 0.0001, MORFITT lr 0.0003; control lr 0.0003 on every task; " \
           "base lr 0.0001 on every task; random init lr 0.001 on every task." in line


def test_without_a_search_the_notes_say_one_setting_served_every_model(store):
    assert "one fixed setting for every model" in study_table_of(SPEC, store)
