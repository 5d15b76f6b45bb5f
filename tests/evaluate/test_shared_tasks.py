"""QUAERO EMEA, QUAERO MEDLINE and MORFITT from ../shared/data, through the real launcher and job array."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcbio.evaluate.loaders import brat_to_iob2, parse_ann
from mcbio.evaluate.run import read_split
from mcbio.evaluate.tasks import get_task
from mcbio.results.records import ResultStore

CONFIG = Path(__file__).resolve().parents[2] / "experiments" / "evaluate" / "config.yaml"


@pytest.mark.shared_data
@pytest.mark.parametrize("corpus,entities", [("EMEA", 2695), ("MEDLINE", 2994)])
def test_quaero_train_entities_are_all_accounted_for(shared_data, corpus, entities):
    """Every T line of the published count is either placed or dropped by the documented policy."""
    stats: dict[str, int] = {}
    folder = shared_data / "quaero" / "corpus" / "train" / corpus
    for txt in sorted(folder.glob("*.txt")):
        brat_to_iob2(txt.read_text(encoding="utf-8"), parse_ann(txt.with_suffix(".ann")), stats=stats)
    assert sum(stats.values()) == entities
    # Nested entities are frequent (MEDLINE keeps 73 %, EMEA 87 % of its train entities).
    assert stats["placed"] > 0.7 * entities


@pytest.mark.shared_data
def test_morfitt_reads_twelve_specialties(shared_data):
    rows = read_split(get_task("morfitt"), "train", str(shared_data))
    assert len(rows) == 1514
    assert len({label for _, labels in rows for label in labels}) == 12


@pytest.mark.slow
@pytest.mark.shared_data
def test_quaero_and_morfitt_evaluated_as_a_job_array(shared_data, tiny_hf_dir, tmp_path):
    from mcbio.cluster import launch
    from mcbio.config.evaluation import EvaluateRunConfig
    from mcbio.pipelines.evaluate import plan_evaluation

    argv = [
        "preset=smoke", f"model.path={tiny_hf_dir}", "model.name=tiny", f"paths.shared_data={shared_data}",
        f"out_dir={tmp_path / 'run'}", f"results_dir={tmp_path / 'results'}", "cluster=local",
        "finetune.max_train_examples=48", "finetune.max_eval_examples=32", "finetune.max_length=64",
        "finetune.max_length_multilabel=64",
    ]
    assert launch(EvaluateRunConfig, CONFIG, plan_evaluation, argv) == 0
    records = ResultStore(tmp_path / "results").records()
    tasks = ("quaero_emea", "quaero_medline", "morfitt")
    got = {(r.task, r.metric) for r in records}
    assert got == {(t, m) for t in tasks[:2] for m in ("strict_f1", "lenient_f1")} | {("morfitt", m) for m in ("micro_f1", "macro_f1", "micro_f1_top1", "macro_f1_top1")}
    for rec in records:
        assert rec.model == "tiny" and rec.seed == 42 and 0.0 <= rec.value <= 1.0
        assert rec.extra["best_epoch"] >= 1 and rec.extra["train_time_s"] > 0
        assert rec.extra["sizes"] == {"train": 48, "dev": 32, "test": 32}
        assert rec.extra["max_length"] == 64
    assert launch(EvaluateRunConfig, CONFIG, plan_evaluation, argv) == 0  # re-launch: every element is skipped
    assert len(ResultStore(tmp_path / "results").records()) == len(records)
