"""Results are tied to the weights that produced them, and pretraining to the data it read.

A model re-exported under the same run name with other weights is evaluated again and the
run's table shows only the new records; with the same weights (re-exported, or copied as
in a clean clone) everything is found done. The report refuses two weights under one
name. A pretraining run is done only while its inputs (shards manifest, corpus files,
starting checkpoint) are what it trained on.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from mcbio.cluster.launcher import LaunchContext
from mcbio.config import PretrainRunConfig, load_config
from mcbio.config.evaluation import EvaluateRunConfig
from mcbio.config.report import ReportRunConfig
from mcbio.files import write_json_atomic
from mcbio.model.export import export_hf
from mcbio.model.fingerprint import model_fingerprint
from mcbio.pipelines.evaluate import RUN_MARKER, evaluate_element, plan_evaluation
from mcbio.pipelines.pretrain import (
    RunTableConfig,
    export_done,
    input_fingerprint,
    pretraining_stages,
    run_table,
    set_aside_stale_state,
    write_run_marker,
)
from mcbio.pipelines.report import generate_report
from mcbio.config.checks import Problems
from mcbio.results.records import ResultRecord, ResultStore
from tests.conftest import REPO, build_tiny_modernbert

EVALUATE = REPO / "experiments" / "evaluate" / "config.yaml"
PRETRAIN = REPO / "experiments" / "base_clm_detour" / "config.yaml"
REPORT = REPO / "experiments" / "report" / "config.yaml"
RUN = "tiny_run"


def export(tokenizer, folder: Path, seed: int) -> Path:
    """A run's export: weights drawn from ``seed``, and the marker naming the run."""
    torch.manual_seed(seed)
    export_hf(build_tiny_modernbert(tokenizer, seed=seed), tokenizer, folder)
    write_json_atomic(folder / RUN_MARKER, {"run": RUN, "config_hash": "h"})
    return folder


class FakeFineTuning:
    """Stands for evaluate_task (its output keys), returning the next score of ``scores``: the
    fine-tuning itself is tested elsewhere, here only which elements run and what they store."""

    def __init__(self, monkeypatch):
        self.calls: list[str] = []
        self.scores: list[float] = []
        monkeypatch.setattr("mcbio.evaluate.run.evaluate_task", self)

    def __call__(self, model_path, task, seed, cfg, shared_data, hp_cache_dir=None, init="pretrained"):
        self.calls.append(model_path)
        value = self.scores.pop(0)
        return {"metrics": {"strict_f1": value, "lenient_f1": value}, "primary_metric": "strict_f1",
                "best_epoch": 1, "epochs_run": 1, "train_time_s": 0.1, "total_time_s": 0.1,
                "train_examples_per_s": 1.0, "dev_score": value, "dev_history": [value], "max_length": 32,
                "sizes": {}, "device": "cpu", "degenerate": None, "caps": {}}


def plan(tmp_path: Path, hf: Path, name: str = "evaluate"):
    cfg = load_config(EvaluateRunConfig, EVALUATE, [
        "preset=smoke", f"name={name}", f"model.path={hf}", "tasks=[mini_ner]", "seeds=[42,43]",
        f"results_dir={tmp_path / 'results'}", f"out_dir={tmp_path / name}"])
    return plan_evaluation(cfg, LaunchContext("local", None)).elements()


def run_all(elements) -> list[dict]:
    return [evaluate_element(e.cfg) for e in elements]


def test_a_model_retrained_under_the_same_name_is_evaluated_again_and_shown_alone(
        tmp_path, tiny_tokenizer, monkeypatch):
    fake = FakeFineTuning(monkeypatch)
    hf = export(tiny_tokenizer, tmp_path / RUN / "hf", seed=0)
    first = plan(tmp_path, hf, "eval_first")
    assert [e.done() for e in first] == [False, False]
    fake.scores = [0.30, 0.32]
    run_all(first)
    store = ResultStore(tmp_path / "results")
    old_fp = model_fingerprint(hf)
    assert {r.model_fingerprint for r in store.records()} == {old_fp}
    assert all(e.done() for e in plan(tmp_path, hf, "eval_first"))

    # The same weights exported again, or the folder copied (a clean clone): everything is done.
    export(tiny_tokenizer, hf, seed=0)
    shutil.copytree(hf, tmp_path / "clone" / "hf")
    assert all(e.done() for e in plan(tmp_path, hf, "eval_first"))
    assert all(e.done() for e in plan(tmp_path, tmp_path / "clone" / "hf", "eval_first"))
    assert run_all(plan(tmp_path, hf, "eval_first")) == [{"skipped": True}] * 2 and len(fake.calls) == 2

    # Retrained: other weights under the same run name. Every element is pending and runs.
    export(tiny_tokenizer, hf, seed=1)
    second = plan(tmp_path, hf, "eval_second")
    assert [e.cfg.model_name for e in second] == [RUN, RUN] and not any(e.done() for e in second)
    fake.scores = [0.70, 0.72]
    run_all(second)
    assert len(fake.calls) == 4
    new_fp = model_fingerprint(hf)
    assert new_fp != old_fp
    assert sorted((r.seed, r.model_fingerprint) for r in store.records() if r.extra["primary"]) == sorted([
        (42, old_fp), (42, new_fp), (43, old_fp), (43, new_fp)])

    # The run's table shows the current export's records only (mean of 0.70 and 0.72).
    table = Path(run_table(RunTableConfig(str(store.root), RUN, str(tmp_path / "results.tex"), False, str(hf))))
    text = table.read_text()
    assert "71.0" in text and "31.0" not in text

    # The report refuses the two weights, naming both and the runs that wrote them ...
    cfg = load_config(ReportRunConfig, REPORT, [f"results_dir={store.root}", "tracking.wandb=false"])
    with pytest.raises(ValueError) as err:
        generate_report(cfg)
    message = str(err.value)
    assert f"model '{RUN}'" in message
    assert f"{old_fp[:12]} (runs: eval_first-smoke)" in message
    assert f"{new_fp[:12]} (runs: eval_second-smoke)" in message
    # ... unless told which to keep.
    keep = load_config(ReportRunConfig, REPORT, [f"results_dir={store.root}", "tracking.wandb=false",
                                                 f"keep_fingerprints={{{RUN}: '{new_fp[:8]}'}}"])
    generate_report(keep)
    repository = (store.tables_dir / "repository_results.tex").read_text()
    assert "71.0" in repository and "31.0" not in repository
    assert "recorded before model fingerprints" not in repository


def test_records_written_before_fingerprints_are_flagged_and_never_reused(tmp_path, tiny_tokenizer, monkeypatch):
    hf = export(tiny_tokenizer, tmp_path / RUN / "hf", seed=0)
    elements = plan(tmp_path, hf)
    store = ResultStore(tmp_path / "results")
    # What the store held before this change: the same done-key, without a fingerprint.
    store.add([ResultRecord(model=RUN, task="mini_ner", seed=e.cfg.seed, metric="strict_f1", value=0.5,
                            config_hash=e.cfg.settings_hash, commit="c", extra={"primary": True, "run": "old"})
               for e in elements], "old")
    assert not any(e.done() for e in elements)
    cfg = load_config(ReportRunConfig, REPORT, [f"results_dir={store.root}", "tracking.wandb=false"])
    generate_report(cfg)
    repository = (store.tables_dir / "repository_results.tex").read_text()
    assert r"tiny\_run$^\circ$" in repository and "recorded before model fingerprints" in repository


# --------------------------------------------------------------------------- pretraining inputs


def pretrain_cfg(tmp_path: Path, *overrides: str) -> PretrainRunConfig:
    return load_config(PretrainRunConfig, PRETRAIN, ["preset=smoke", f"out_dir={tmp_path / 'run'}",
                                                     f"evaluation.results_dir={tmp_path / 'results'}", *overrides])


def exported(cfg: PretrainRunConfig, tokenizer) -> Path:
    """The run's export as pretrain_element leaves it: weights, then the marker with the inputs."""
    hf = Path(cfg.out_dir) / "hf"
    torch.manual_seed(0)
    export_hf(build_tiny_modernbert(tokenizer), tokenizer, hf)
    write_run_marker(hf, cfg, input_fingerprint(cfg))
    return hf


def on_shards(tmp_path: Path, tokenizer, index: str, *overrides: str) -> tuple[PretrainRunConfig, Path, Path]:
    """A run trained on packed shards whose manifest reads ``index``: (config, export, shards folder)."""
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "index.json").write_text(index)
    cfg = pretrain_cfg(tmp_path, f"data.shards={shards}", *overrides)
    return cfg, exported(cfg, tokenizer), shards


def on_corpus(tmp_path: Path, tokenizer) -> tuple[PretrainRunConfig, Path, Path]:
    """A run trained on a one-file corpus folder: (config, export, corpus folder)."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.jsonl").write_text('{"text": "Le patient tousse."}\n')
    cfg = pretrain_cfg(tmp_path, f"data.corpus={corpus}")
    return cfg, exported(cfg, tokenizer), corpus


def test_a_changed_shards_manifest_or_starting_checkpoint_makes_pretraining_run_again(tmp_path, tiny_tokenizer):
    base = tmp_path / "base"
    torch.manual_seed(0)
    export_hf(build_tiny_modernbert(tiny_tokenizer, seed=0), tiny_tokenizer, base)
    manifest = json.dumps({"shards": [{"name": "shard-00000", "num_sequences": 10}]})
    cfg, hf, shards = on_shards(tmp_path, tiny_tokenizer, manifest, f"model.init_from={base}")
    assert export_done(cfg, hf)
    # Same config, same run name, other data: not done.
    (shards / "index.json").write_text(json.dumps({"shards": [{"name": "shard-00000", "num_sequences": 11}]}))
    assert not export_done(cfg, hf)
    (shards / "index.json").write_text(manifest)
    assert export_done(cfg, hf)
    # The base it starts from retrained: not done either.
    torch.manual_seed(1)
    export_hf(build_tiny_modernbert(tiny_tokenizer, seed=1), tiny_tokenizer, base)
    assert not export_done(cfg, hf)
    # Inputs not produced yet (a study's curation has not run): not done, no error.
    (shards / "index.json").unlink()
    assert not export_done(cfg, hf)
    # A marker written before inputs were recorded is not trusted.
    old_marker = {k: v for k, v in json.loads((hf / RUN_MARKER).read_text()).items() if k != "inputs"}
    write_json_atomic(hf / RUN_MARKER, old_marker)
    assert not export_done(cfg, hf)


def test_evaluation_settings_do_not_make_pretraining_run_again_training_settings_do(tmp_path, tiny_tokenizer):
    """A study that sizes its fine-tuning after pretraining re-plans its evaluation, not its models."""
    manifest = json.dumps({"shards": [{"name": "shard-00000", "num_sequences": 10}]})
    cfg, hf, shards = on_shards(tmp_path, tiny_tokenizer, manifest)
    assert export_done(cfg, hf)
    for override in ("evaluation.seeds=[1,2,3]", "evaluation.finetune.epochs=1", "report.decimal_comma=true",
                     "stages=[pretrain]"):
        assert export_done(pretrain_cfg(tmp_path, f"data.shards={shards}", override), hf), override
    assert not export_done(pretrain_cfg(tmp_path, f"data.shards={shards}", "train.seed=18"), hf)
    assert not export_done(pretrain_cfg(tmp_path, f"data.shards={shards}", "model.intermediate_size=100"), hf)


def test_the_same_inputs_at_another_path_are_the_same_run(tmp_path, tiny_tokenizer):
    """A corpus reached through MCBIO_DATA or ../shared/data, or in a clone elsewhere: content decides."""
    cfg, hf, corpus = on_corpus(tmp_path, tiny_tokenizer)
    shutil.copytree(corpus, tmp_path / "elsewhere")
    (tmp_path / "link").symlink_to(corpus)
    assert export_done(pretrain_cfg(tmp_path, f"data.corpus={tmp_path / 'elsewhere'}"), hf)
    assert export_done(pretrain_cfg(tmp_path, f"data.corpus={tmp_path / 'link'}/../corpus"), hf)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.jsonl").write_text('{"text": "Fièvre."}\n')
    assert not export_done(pretrain_cfg(tmp_path, f"data.corpus={tmp_path / 'other'}"), hf)


def test_a_changed_corpus_file_makes_pretraining_run_again(tmp_path, tiny_tokenizer):
    cfg, hf, corpus = on_corpus(tmp_path, tiny_tokenizer)
    assert export_done(cfg, hf)
    (corpus / "a.jsonl").write_text('{"text": "Le patient toussa."}\n')  # same size, other content
    assert not export_done(cfg, hf)
    (corpus / "a.jsonl").write_text('{"text": "Le patient tousse."}\n')
    assert export_done(cfg, hf)
    (corpus / "b.jsonl").write_text('{"text": "Fièvre."}\n')
    assert not export_done(cfg, hf)


def test_evaluation_of_a_run_waits_for_its_pretraining_when_the_inputs_changed(tmp_path, tiny_tokenizer):
    """The export on disk is about to be replaced: its records do not make the run's evaluation done."""
    cfg, hf, shards = on_shards(tmp_path, tiny_tokenizer, '{"v": 1}')
    pretrain, evaluate, _, _ = pretraining_stages(cfg, Problems())
    fingerprint = model_fingerprint(hf)
    ResultStore(tmp_path / "results").add([
        ResultRecord(model=e.cfg.model_name, task=e.cfg.task.name, seed=e.cfg.seed, metric="strict_f1", value=0.5,
                     config_hash=e.cfg.settings_hash, commit="c", extra={"primary": True},
                     model_fingerprint=fingerprint) for e in evaluate], "run")
    assert pretrain[0].done() and evaluate and all(e.done() for e in evaluate)
    (shards / "index.json").write_text('{"v": 2}')
    assert not pretrain[0].done() and not any(e.done() for e in evaluate)


def test_state_built_from_other_inputs_is_set_aside_before_training(tmp_path):
    run = tmp_path / "run"
    for name in ("checkpoints", "hf", "wandb", "data/packed-128", "data/selected", "tokenizer"):
        (run / name).mkdir(parents=True)
        (run / name / "f").write_text(name)
    corpus = run / "data" / "selected" / "f"  # a grid cell's corpus sits in its run directory
    inputs = (corpus, run / "tokenizer")  # model.tokenizer may name the tokenizer an earlier run trained
    # A run directory from before inputs were recorded: kept (its inputs are unknown).
    assert set_aside_stale_state(run, {"fingerprint": "a"}, inputs) is None
    assert set_aside_stale_state(run, {"fingerprint": "a"}, inputs) is None and (run / "checkpoints" / "f").exists()
    moved = set_aside_stale_state(run, {"fingerprint": "b"}, inputs)
    assert moved is not None and moved.parent == run / "stale"
    assert not any((run / name).exists() for name in ("checkpoints", "hf", "data/packed-128"))
    assert (moved / "checkpoints" / "f").read_text() == "checkpoints" and (moved / "data" / "packed-128" / "f").exists()
    assert (run / "wandb" / "f").exists()  # logs are not built from the inputs
    assert corpus.read_text() == "data/selected" and (run / "tokenizer" / "f").exists()  # inputs are never moved
    assert json.loads((run / "run_inputs.json").read_text()) == {"fingerprint": "b"}
