"""benchmarks/finetune_sizing.py: its arithmetic (CI half-width, MDE, study wall time, seeds for a target),
from a study's records and from fine-tuning two tiny models through the repository's evaluation."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys

import pytest
from scipy import stats as scipy_stats

from mcbio.results.stats import minimal_detectable_effect
from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "finetune_sizing.py"


@pytest.fixture(scope="module")
def sizing():
    spec = importlib.util.spec_from_file_location("finetune_sizing", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# Two tasks x 3 seeds; a - b is +1, +3, +2 on t1 and -1, 0, +1 on t2: mean 1, squares 0+4+1+4+1+0 = 10
# over 5 df, so sd = sqrt(2). Every t1 run takes 0.5 min, every t2 run 1 min (model c is timed only).
DIFFS = {("t1", 1): 1.0, ("t1", 2): 3.0, ("t1", 3): 2.0, ("t2", 1): -1.0, ("t2", 2): 0.0, ("t2", 3): 1.0}


def synthetic_runs(sizing, setting: str = "s") -> list:
    runs = []
    for (task, seed), d in DIFFS.items():
        minutes = 0.5 if task == "t1" else 1.0
        runs += [sizing.Run(setting, "a", task, seed, 50.0 + d, minutes), sizing.Run(setting, "b", task, seed, 50.0, minutes),
                 sizing.Run(setting, "c", task, seed, 40.0, minutes)]
    return runs


def test_the_summary_predicts_half_width_mde_and_wall_time_by_hand(sizing):
    s = sizing.summarise(synthetic_runs(sizing), "a", "b", [10], study_models=4, parallel=2, overhead_s=6.0,
                         other_min=40.0, confidence=0.95, power=0.8, target=0.6)
    assert s["pairs_measured"] == 6 and s["mean_diff"] == pytest.approx(1.0)
    assert s["sd_diff"] == pytest.approx(math.sqrt(2))
    lo, hi = s["sd_diff_ci"]  # sqrt(5 / chi2 quantiles of 5 df): 0.62 and 2.45 times sd
    assert lo == pytest.approx(math.sqrt(2) * 0.6242, abs=1e-3) and hi == pytest.approx(math.sqrt(2) * 2.4526, abs=1e-3)
    assert s["run_min"] == pytest.approx(0.75) and s["run_min_by_task"] == {"t1": 0.5, "t2": 1.0}
    # One seed of the study: 4 models x (0.5 + 0.1 + 1.0 + 0.1) min, 2 at a time = 3.4 min.
    assert s["seed_wall_min"] == pytest.approx(3.4)
    assert s["precision_per_min"] == pytest.approx(2 / (2 * 3.4))
    (ten,) = s["study"]
    assert (ten["seeds"], ten["pairs"]) == (10, 20)
    assert ten["ci_half_width"] == pytest.approx(2.093024 * math.sqrt(2) / math.sqrt(20), abs=1e-5)  # t(0.975, 19)
    assert ten["mde"] == pytest.approx(minimal_detectable_effect(math.sqrt(2), 20))
    assert ten["eval_min"] == pytest.approx(34.0) and ten["total_min"] == pytest.approx(74.0)
    # 11 seeds: t(0.975, 21) * sqrt(2/22) = 0.627; 12 seeds: t(0.975, 23) * sqrt(2/24) = 0.597.
    assert s["target"]["seeds"] == 12 and s["target"]["ci_half_width"] == pytest.approx(0.5972, abs=1e-4)


def test_the_element_overhead_comes_from_the_stage_records_times(sizing):
    # 2 slots, 6 runs of 8 s each followed by 2 s outside the run: records at 10, 10, 20, 20, 30, 30 s.
    assert sizing.element_overhead_s([10, 10, 20, 20, 30, 30], [8.0] * 6, 2) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="more than --parallel"):
        sizing.element_overhead_s([1.0, 2.0], [1.0, 1.0], 2)


def test_from_a_studys_records_it_prints_the_table_and_the_seeds_that_reach_the_target(sizing, tmp_path, capsys):
    from mcbio.results.records import ResultRecord, ResultStore

    store = ResultStore(tmp_path / "results")
    caps = {"epochs": 4, "max_train_examples": 400, "max_eval_examples": None, "full_sizes": {"train": 706}}
    runs = synthetic_runs(sizing)
    # 18 runs averaging 45 s, 2 at a time with 6 s around each: the last record 51 * 16 / 2 = 408 s after the first.
    stamps = [1000.0 + 408.0 * i / (len(runs) - 1) for i in range(len(runs))]
    store.add([ResultRecord(model=r.model, task=r.task, seed=r.seed, metric="f1", value=r.score / 100, config_hash="h",
                            commit="c", timestamp=t, extra={"primary": True, "total_time_s": 60 * r.minutes, "caps": caps})
               for r, t in zip(runs, stamps)], "study")
    out = tmp_path / "sizing.json"
    sizing.main(["--records", str(store.records_dir / "study.jsonl"), "--pair", "a", "b", "--study-seeds", "10",
                 "--other-min", "40", "--json", str(out)])
    text = capsys.readouterr().out
    setting = "epochs=4,max_train_examples=400"
    assert f"setting: {setting}" in text
    assert "overhead 6.0 s per run; mean diff +1.00, sd diff 1.41" in text
    assert "    10     20   0.66   " in text and "   34         74" in text  # S, pairs, CI +-, ..., eval, total
    assert f"{setting}: S = 12 (24 pairs): CI +-0.60" in text
    assert f"Cheapest setting reaching the target within the budget: {setting}" in text
    saved = json.loads(out.read_text())
    assert saved["models_in_study"] == 4  # the laptop study: 2 arms, the base and the random-init row
    assert saved["settings"][setting]["overhead_s"] == pytest.approx(6.0)
    assert saved["settings"][setting]["study"][0]["eval_min"] == pytest.approx(10 * 4 * (0.6 + 1.1) / 2)


def test_a_mistyped_grid_key_is_an_error_naming_it(sizing, tmp_path):
    from mcbio.config.loader import ConfigError

    with pytest.raises(ConfigError, match="evaluation.finetune.epochz"):
        sizing.main(["--models", str(tmp_path), str(tmp_path), "--grid", "epochz=3"])


@pytest.fixture(scope="module")
def two_tiny_arms(tmp_path_factory, tiny_tokenizer):
    from mcbio.model.export import export_hf
    from tests.conftest import build_tiny_modernbert

    root = tmp_path_factory.mktemp("arms")
    for seed, name in enumerate(("arm_a", "arm_b")):
        export_hf(build_tiny_modernbert(tiny_tokenizer, seed=seed), tiny_tokenizer, root / name)
    return root / "arm_a", root / "arm_b"


def test_it_fine_tunes_each_setting_through_the_evaluation_and_sizes_the_study_from_the_runs(two_tiny_arms, tmp_path):
    out = tmp_path / "sizing.json"
    grid = ["max_train_examples=40,epochs=1,max_length=32", "max_train_examples=30,epochs=2,max_length=32"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--models", *map(str, two_tiny_arms),
                           "--set", "evaluation.tasks=[mini_ner]", "--grid", *grid, "--seeds", "3", "--reuse-workers",
                           "--study-seeds", "9", "18", "--json", str(out)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    saved = json.loads(out.read_text())
    assert saved["pair"] == ["arm_a", "arm_b"] and saved["models_in_study"] == 4
    assert [s["finetune"]["mini_ner"]["epochs"] for s in saved["settings"].values()] == [1, 2]
    assert [s["finetune"]["mini_ner"]["max_train_examples"] for s in saved["settings"].values()] == [40, 30]
    for setting in grid:
        runs = [r for r in saved["runs"] if r["setting"] == setting]
        assert sorted((r["model"], r["seed"]) for r in runs) == [(m, s) for m in ("arm_a", "arm_b") for s in (42, 43, 44)]
        score = {(r["model"], r["seed"]): r["score"] for r in runs}
        diffs = [score["arm_a", s] - score["arm_b", s] for s in (42, 43, 44)]
        run_min = statistics.fmean(r["minutes"] for r in runs)
        got = saved["settings"][setting]
        assert got["sd_diff"] == pytest.approx(statistics.stdev(diffs)) and got["run_min"] == pytest.approx(run_min)
        # 4 models x 1 task x (run + 11 s) per seed, 2 at a time.
        seed_wall = 4 * (run_min + 11 / 60) / 2
        nine, eighteen = got["study"]
        assert nine["eval_min"] == pytest.approx(9 * seed_wall) and eighteen["eval_min"] == pytest.approx(18 * seed_wall)
        assert eighteen["ci_half_width"] == pytest.approx(
            scipy_stats.t.ppf(0.975, 17) * statistics.stdev(diffs) / math.sqrt(18))
        assert f"setting: {setting}" in proc.stdout
