"""benchmarks/study_diagnosis.py: the held-out split it pretrains around, its longer-budget phases, and how it
picks each model's lr from the dev scores over seeds (hand-checked values; no pretraining here)."""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys

import pytest

from mcbio.config.loader import load_config
from mcbio.config.study import StudyConfig
from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "study_diagnosis.py"


@pytest.fixture(scope="module")
def diagnosis():
    spec = importlib.util.spec_from_file_location("study_diagnosis", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_kth_document_is_held_out_and_never_in_the_training_folder(diagnosis, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    with gzip.open(src / "a.jsonl.gz", "wt", encoding="utf-8") as f:
        for i in range(7):
            f.write(json.dumps({"id": f"d{i}", "text": f"document {i}"}) + "\n")
    (src / "b.jsonl").write_text("".join(json.dumps({"id": f"d{i}", "text": f"document {i}"}) + "\n" for i in (7, 8)))
    train, heldout, counts = diagnosis.split_corpus(src, tmp_path / "out", 4)
    held = [json.loads(x)["id"] for x in gzip.open(heldout, "rt").read().splitlines()]
    kept = [json.loads(x)["id"] for p in train.iterdir() for x in gzip.open(p, "rt").read().splitlines()]
    assert held == ["d0", "d4", "d8"] and sorted(kept) == ["d1", "d2", "d3", "d5", "d6", "d7"]
    assert counts == {"train": 6, "heldout": 3}


def test_a_longer_budget_scales_every_phase_and_its_warmup(diagnosis):
    train = load_config(StudyConfig, REPO / "experiments" / "laptop_study" / "config.yaml", []).base.train
    x4 = diagnosis.scaled_train(train, 4)
    assert x4.phases["stable"].tokens == 4 * 2211840 and x4.phases["stable"].warmup_tokens == 4 * 131072
    assert x4.phases["decay"].tokens == 4 * 245760 and x4.phases["decay"].lr == train.phases["decay"].lr


def test_each_models_lr_is_the_best_mean_dev_over_seeds_ties_to_the_lower(diagnosis):
    def run(model, lr, seed, dev, test):
        return {"model": model, "task": "morfitt", "lr": lr, "seed": seed, "dev": dev, "test": test, "degenerate": None}
    runs = [run("random", 1e-4, 42, 10.0, 11.0), run("random", 1e-4, 43, 20.0, 13.0),   # dev 15
            run("random", 1e-3, 42, 30.0, 30.0), run("random", 1e-3, 43, 10.0, 34.0),   # dev 20: best
            run("base", 1e-4, 42, 25.0, 20.0), run("base", 1e-4, 43, 15.0, 22.0),       # dev 20, tied
            run("base", 1e-3, 42, 18.0, 40.0), run("base", 1e-3, 43, 22.0, 44.0)]       # dev 20: the lower lr wins
    table = diagnosis.by_setting(runs)
    assert table["random", "morfitt", 1e-3]["test"] == 32.0 and table["random", "morfitt", 1e-3]["test_sd"] == pytest.approx(2.8284, abs=1e-4)
    assert diagnosis.best_lrs(table) == {("random", "morfitt"): 1e-3, ("base", "morfitt"): 1e-4}
