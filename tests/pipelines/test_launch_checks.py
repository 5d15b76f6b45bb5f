"""Bad input stops at launch, before anything is submitted, with a message naming the key and the file."""

from __future__ import annotations

import time
from pathlib import Path


from mcbio.cluster.launcher import launch
from tests.conftest import launch_refused
from mcbio.config import PretrainRunConfig
from mcbio.config.evaluation import EvaluateRunConfig
from mcbio.pipelines.evaluate import plan_evaluation
from mcbio.pipelines.pretrain import plan_pretraining

REPO = Path(__file__).resolve().parents[2]
PRETRAIN = REPO / "experiments" / "base_clm_detour" / "config.yaml"
EVALUATE = REPO / "experiments" / "evaluate" / "config.yaml"


refused = launch_refused


def test_pretraining_with_an_unknown_evaluation_task(tmp_path, capsys):
    err = refused(capsys, PretrainRunConfig, PRETRAIN, plan_pretraining, tmp_path / "run", "preset=smoke",
                  "evaluation.tasks=[mini_nerr]")
    assert "'evaluation.tasks': unknown task 'mini_nerr'" in err and "mini_ner" in err


def test_pretraining_with_a_missing_corpus_and_an_empty_init_folder_reports_both(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    err = refused(capsys, PretrainRunConfig, PRETRAIN, plan_pretraining, tmp_path / "run", "preset=smoke",
                  f"data.corpus={tmp_path / 'nope'}", f"model.init_from={empty}")
    assert "2 problem(s)" in err
    assert f"'data.corpus': {tmp_path / 'nope'} does not exist" in err
    assert f"'model.init_from': {empty} is not a Hugging Face model folder (config.json missing)" in err


def _task_file(tmp_path: Path, **changes: str) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "dev", "test"):
        (data / f"{split}.jsonl").write_text('{"id": 1, "text": "fièvre", "label": "a"}\n'
                                             '{"id": 2, "text": "toux", "label": "b"}\n', encoding="utf-8")
    keys = {"type": "single_label", "format": "jsonl", "root": "data", "label_field": "label", **changes}
    lines = ["my_task:"] + [f"  {k}: {v}" for k, v in keys.items()]
    lines += ["  splits: {train: train.jsonl, dev: dev.jsonl, test: test.jsonl}"]
    path = tmp_path / "tasks.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_declared_task_with_a_wrong_field_names_file_and_line(tmp_path, capsys, tiny_hf_dir):
    tasks = _task_file(tmp_path, label_field="labels")
    err = refused(capsys, EvaluateRunConfig, EVALUATE, plan_evaluation, tmp_path / "run", "preset=smoke",
                  f"model.path={tiny_hf_dir}", "model.name=tiny", f"task_files=[{tasks}]", "tasks=[my_task]")
    assert "'tasks'" in err and "train.jsonl:1" in err and "labels" in err


def test_an_unknown_metric_is_refused(tmp_path, capsys, tiny_hf_dir):
    tasks = _task_file(tmp_path, metric="seqeval_strict_f1")
    err = refused(capsys, EvaluateRunConfig, EVALUATE, plan_evaluation, tmp_path / "run", "preset=smoke",
                  f"model.path={tiny_hf_dir}", "model.name=tiny", f"task_files=[{tasks}]", "tasks=[my_task]")
    assert "metric 'seqeval_strict_f1' is not reported for single_label tasks" in err and "macro_f1" in err


def test_a_declared_but_unselected_task_is_pointed_out(tmp_path, capsys, tiny_hf_dir, monkeypatch):
    monkeypatch.delenv("MCBIO_DATA", raising=False)
    tasks = _task_file(tmp_path)
    err = refused(capsys, EvaluateRunConfig, EVALUATE, plan_evaluation, tmp_path / "run", "preset=smoke",
                  f"model.path={tiny_hf_dir}", "model.name=tiny", f"task_files=[{tasks}]")
    assert "declared task(s) my_task" in err and "'tasks'" in err


def test_an_unnamed_model_that_no_run_exported_must_be_named(tmp_path, capsys, tiny_hf_dir):
    err = refused(capsys, EvaluateRunConfig, EVALUATE, plan_evaluation, tmp_path / "run", "preset=smoke",
                  f"model.path={tiny_hf_dir}", "tasks=[mini_ner]")
    assert "'model.name': not set" in err and str(tiny_hf_dir) in err


def test_an_empty_model_path_is_refused(tmp_path, capsys):
    err = refused(capsys, EvaluateRunConfig, EVALUATE, plan_evaluation, tmp_path / "run", "preset=smoke",
                  "tasks=[mini_ner]")
    assert "'model.path': not set" in err


def test_a_slurm_profile_never_runs_on_the_local_executor(tmp_path, capsys, tiny_hf_dir):
    """The evaluation launcher without a preset keeps the Jean Zay profile: refused, naming it and the key."""
    err = refused(capsys, EvaluateRunConfig, EVALUATE, plan_evaluation, tmp_path / "run", "cluster=local",
                  f"model.path={tiny_hf_dir}", "model.name=tiny", "tasks=[mini_ner]")
    assert "'jean_zay_h100'" in err and "resources.profile=local" in err and "module purge" in err


def test_dry_runs_with_every_check_take_seconds(tmp_path, capsys, tiny_hf_dir):
    started = time.time()
    # Their own run directories: the checkout's runs/ may hold a finished quick start.
    assert launch(PretrainRunConfig, PRETRAIN, plan_pretraining,
                  ["preset=smoke", "dry_run=true", f"out_dir={tmp_path / 'pretrain'}",
                   f"evaluation.results_dir={tmp_path / 'results'}"]) == 0
    assert launch(EvaluateRunConfig, EVALUATE, plan_evaluation,
                  ["preset=smoke", "dry_run=true", f"model.path={tiny_hf_dir}", "model.name=tiny", "tasks=[mini_ner]",
                   f"out_dir={tmp_path / 'evaluate'}", f"results_dir={tmp_path / 'results'}"]) == 0
    out = capsys.readouterr().out
    assert "#   pretrain/base_clm_detour-smoke: pending" in out and "evaluate/tiny/mini_ner/seed-42" in out
    # Generous bound for a loaded 2-core CI machine; typically ~1 s each.
    assert time.time() - started < 60
