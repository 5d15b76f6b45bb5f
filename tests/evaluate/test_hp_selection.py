"""Per-model fine-tuning settings chosen on the validation split: the best dev score wins, ties go to
the lower learning rate, and one search serves every element of a (model fingerprint, task)."""

from __future__ import annotations

import shutil
import threading

import pytest

import mcbio.evaluate.run as run_mod
from mcbio.config.schema import FinetuneConfig
from mcbio.evaluate.tasks import load_task_file

LRS = [1e-4, 3e-4, 1e-3]


def trials(*scores: float, lrs=LRS) -> list[dict]:
    return [{"params": {"lr": lr}, "dev_score": s} for lr, s in zip(lrs, scores)]


@pytest.mark.parametrize("scores, chosen", [
    ((0.40, 0.55, 0.50), 3e-4),   # the best dev score
    ((0.40, 0.50, 0.70), 1e-3),
    ((0.55, 0.55, 0.55), 1e-4),   # a three-way tie: the lowest lr
    ((0.30, 0.60, 0.60), 3e-4),   # a higher lr that only matches a lower one does not win
])
def test_the_best_dev_score_wins_and_a_tie_goes_to_the_lower_lr(scores, chosen):
    assert run_mod.best_trial(trials(*scores))["params"]["lr"] == chosen


def test_a_tie_goes_to_the_lower_lr_whatever_the_grid_order():
    assert run_mod.best_trial(trials(0.6, 0.6, 0.2, lrs=[1e-3, 1e-4, 3e-4]))["params"]["lr"] == 1e-4


def test_a_tie_at_one_lr_across_other_axes_keeps_the_first_grid_point():
    both = [{"params": {"lr": 1e-4, "batch_size": 8}, "dev_score": 0.5},
            {"params": {"lr": 1e-4, "batch_size": 16}, "dev_score": 0.5}]
    assert run_mod.best_trial(both)["params"] == {"lr": 1e-4, "batch_size": 8}


@pytest.fixture()
def search_setup(task_file, tiny_hf_dir, tmp_path, monkeypatch):
    """A toy task, the study's lr grid, and a fake fine-tuning whose dev score depends on (init, lr):
    random weights do best at 1e-3, the pretrained ones at 1e-4."""
    spec = load_task_file(task_file)["toy_codes"]
    cfg = FinetuneConfig(epochs=1, batch_size=8, max_length=32, max_length_multilabel=32, window_stride=8)
    cfg.hp_search.lr = list(LRS)
    calls = []
    dev = {"pretrained": {1e-4: 0.62, 3e-4: 0.58, 1e-3: 0.41}, "random": {1e-4: 0.20, 3e-4: 0.35, 1e-3: 0.48}}

    def fake_finetune(model_path, task, splits, seed, trial_cfg, device, init="pretrained"):
        calls.append((model_path, init, trial_cfg.lr, seed))
        return {"dev_score": dev[init][trial_cfg.lr]}

    monkeypatch.setattr(run_mod, "finetune", fake_finetune)
    return spec, cfg, calls, run_mod.read_splits(spec, None, cfg)


def test_each_model_gets_its_own_lr_and_every_trial_is_recorded(search_setup, tiny_hf_dir, tmp_path):
    spec, cfg, calls, splits = search_setup
    pre = run_mod.search_hyperparameters(str(tiny_hf_dir), spec, splits, cfg, "cpu", tmp_path / "cache")
    rnd = run_mod.search_hyperparameters(str(tiny_hf_dir), spec, splits, cfg, "cpu", tmp_path / "cache", init="random")
    assert pre["best"] == {"lr": 1e-4} and rnd["best"] == {"lr": 1e-3}
    assert [t["dev_score"] for t in pre["trials"]] == [0.62, 0.58, 0.41]
    # Every trial with the search's seed, so that every array element finds the same choice.
    assert {c[3] for c in calls} == {cfg.hp_search.seed} and len(calls) == 6


def test_the_search_is_cached_by_fingerprint_so_a_copy_of_the_model_elsewhere_reuses_it(search_setup, tiny_hf_dir,
                                                                                         tmp_path):
    spec, cfg, calls, splits = search_setup
    first = run_mod.search_hyperparameters(str(tiny_hf_dir), spec, splits, cfg, "cpu", tmp_path / "cache")
    copy = tmp_path / "elsewhere"
    shutil.copytree(tiny_hf_dir, copy)
    assert run_mod.search_hyperparameters(str(copy), spec, splits, cfg, "cpu", tmp_path / "cache") == first
    assert len(calls) == 3
    # Other fine-tuning settings are another search.
    other = FinetuneConfig(epochs=2, batch_size=8, max_length=32, max_length_multilabel=32, window_stride=8)
    other.hp_search.lr = list(LRS)
    run_mod.search_hyperparameters(str(copy), spec, splits, other, "cpu", tmp_path / "cache")
    assert len(calls) == 6


def test_elements_searching_at_once_share_one_search(search_setup, tiny_hf_dir, tmp_path):
    spec, cfg, calls, splits = search_setup
    found = []
    threads = [threading.Thread(target=lambda: found.append(run_mod.search_hyperparameters(
        str(tiny_hf_dir), spec, splits, cfg, "cpu", tmp_path / "cache"))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 3 and len(found) == 3 and all(f == found[0] for f in found)


def test_the_chosen_settings_are_returned_with_the_result(task_file, tiny_hf_dir, tmp_path):
    spec = load_task_file(task_file)["toy_codes"]
    cfg = FinetuneConfig(epochs=1, batch_size=8, max_length=32, max_length_multilabel=32, window_stride=8)
    cfg.hp_search.lr = [1e-2, 1e-7]
    res = run_mod.evaluate_task(str(tiny_hf_dir), spec, 43, cfg, None, hp_cache_dir=tmp_path / "cache")
    assert [t["params"] for t in res["hp_trials"]] == [{"lr": 1e-2}, {"lr": 1e-7}]
    assert res["hp_search"] == run_mod.best_trial(res["hp_trials"])["params"]
