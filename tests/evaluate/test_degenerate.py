"""Degenerate fine-tuning runs (dev score never above 0, single-class test predictions) are flagged."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mcbio.config.schema import FinetuneConfig
from mcbio.evaluate.degenerate import (
    degenerate_reason,
    multi_label_prediction_counts,
    ner_prediction_counts,
    single_label_prediction_counts,
)
from mcbio.evaluate.tasks import TaskSpec

MINI_NER = Path(__file__).resolve().parents[2] / "mcbio" / "resources" / "sample_tasks" / "mini_ner"


def test_dev_score_never_above_zero_is_flagged_with_its_history():
    reason = degenerate_reason([0.0, 0.0, 0.0], Counter({"O": 30, "B-DISO": 2}), "words")
    assert reason == "dev score never above 0 (history [0.0, 0.0, 0.0])"
    assert degenerate_reason([0.0, 0.01, 0.0], Counter({"O": 30, "B-DISO": 2})) is None


def test_single_class_predictions_are_flagged_for_every_task_type():
    ner = ner_prediction_counts([["O", "O"], ["O"]])
    assert degenerate_reason([0.3], ner, "words") == "test predictions are a single class ('O') for all 3 words"
    assert degenerate_reason([0.3], ner_prediction_counts([["I-DISO"] * 4])).startswith(
        "test predictions are a single class ('I-DISO')")
    assert degenerate_reason([0.3], ner_prediction_counts([["O", "B-DISO"], ["O"]])) is None

    labels = ["a", "b", "c"]
    assert "single class ('b')" in degenerate_reason([0.2], single_label_prediction_counts([1, 1, 1], labels))
    assert degenerate_reason([0.2], single_label_prediction_counts([1, 0, 1], labels)) is None

    empty = multi_label_prediction_counts(np.zeros((5, 3), dtype=int), labels)
    assert "the empty label set" in degenerate_reason([0.2], empty)
    same = multi_label_prediction_counts(np.array([[1, 0, 1]] * 4), labels)
    assert "single class ('a|c')" in degenerate_reason([0.2], same)
    varied = multi_label_prediction_counts(np.array([[1, 0, 1], [1, 0, 0]]), labels)
    assert degenerate_reason([0.2], varied) is None
    # Both reasons at once; one prediction says nothing.
    both = degenerate_reason([0.0], ner)
    assert both.startswith("dev score never above 0") and "; test predictions are a single class" in both
    assert degenerate_reason([0.5], Counter({"O": 1})) is None


@pytest.fixture()
def entity_free_task(tmp_path) -> TaskSpec:
    """mini_ner with every training tag set to O: nothing to learn, the model can only answer O."""
    for split in ("train", "dev", "test"):
        lines = (MINI_NER / f"{split}.conll").read_text(encoding="utf-8").splitlines()
        if split == "train":
            lines = [line.rsplit("\t", 1)[0] + "\tO" if line.strip() else line for line in lines]
        (tmp_path / f"{split}.conll").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return TaskSpec(name="mini_ner_no_entities", type="ner", format="conll", root=str(tmp_path),
                    splits={s: f"{s}.conll" for s in ("train", "dev", "test")})


def test_a_run_that_learns_nothing_is_flagged_and_warned(entity_free_task, tiny_hf_dir, caplog):
    from mcbio.evaluate.run import evaluate_task

    cfg = FinetuneConfig(epochs=2, lr=1e-3, batch_size=16, max_length=64, early_stopping_patience=1)
    with caplog.at_level(logging.WARNING, logger="mcbio.evaluate.run"):
        res = evaluate_task(str(tiny_hf_dir), entity_free_task, 42, cfg, None)
    assert res["metrics"]["strict_f1"] == 0.0
    assert res["degenerate"].startswith("dev score never above 0 (history [0.0, 0.0])")
    assert "test predictions are a single class ('O')" in res["degenerate"]
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "DEGENERATE" in r.getMessage()]
    assert warned and res["degenerate"] in warned[0].getMessage()


def test_a_run_that_learns_is_not_flagged(tiny_hf_dir):
    from mcbio.evaluate.run import evaluate_task

    cfg = FinetuneConfig(epochs=6, lr=5e-3, batch_size=8, max_length=64, early_stopping_patience=3)
    res = evaluate_task(str(tiny_hf_dir), "mini_ner", 42, cfg, None)
    assert max(res["dev_history"]) > 0 and res["metrics"]["strict_f1"] > 0
    assert res["degenerate"] is None


def test_results_table_marks_a_cell_with_a_degenerate_seed():
    from mcbio.results.latex import results_table
    from mcbio.results.records import ResultRecord

    def rec(model, seed, value, degenerate=None):
        return ResultRecord(model=model, task="quaero_medline", seed=seed, metric="strict_f1", value=value,
                            config_hash="h", commit="c", extra={"degenerate": degenerate})

    records = [rec("ours", 42, 0.30), rec("ours", 43, 0.0, "dev score never above 0 (history [0.0])"),
               rec("random", 42, 0.25), rec("random", 43, 0.26)]
    table = results_table(records, caption="t", label="tab:t")
    row = next(line for line in table.splitlines() if line.startswith("quaero"))
    ours, random_ = row.split("&")[1:3]
    assert r"$^\dagger$" in ours and r"\dagger" not in random_
    assert r"\footnotesize $^\dagger$ at least one seed is degenerate" in table
    clean = results_table([r for r in records if not r.extra["degenerate"]], caption="t", label="tab:t")
    assert r"\dagger" not in clean
