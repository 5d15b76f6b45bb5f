"""User-declared YAML tasks run end to end; task registry errors; long inputs (truncate vs windows)."""

from __future__ import annotations

import json

import pytest

from mcbio.config.evaluation import EvaluateRunConfig
from mcbio.config.loader import ConfigError, load_config
from mcbio.config.schema import FinetuneConfig
from mcbio.evaluate.encoding import encode_ner, encode_texts
from mcbio.evaluate.tasks import get_task, load_task_file
from mcbio.results.records import ResultStore

CONFIG = "experiments/evaluate/config.yaml"
WORDS = "patient douleur traitement dose cancer tumeur fièvre toux rein foie coeur poumon".split()


@pytest.mark.slow
def test_yaml_declared_task_runs_and_writes_records(task_file, tiny_hf_dir, tmp_path):
    """Through the real launcher (local backend, one element per seed), then a relaunch that skips it."""
    from mcbio.cluster import launch
    from mcbio.pipelines.evaluate import plan_evaluation

    spec = load_task_file(task_file)["toy_codes"]
    assert spec.root == str(task_file.parent / "data") and spec.primary_metric == "micro_f1"
    argv = [
        f"model.path={tiny_hf_dir}", "model.name=tiny", f"task_files=[{task_file}]", "tasks=[toy_codes]",
        "seeds=[42]", f"results_dir={tmp_path / 'results'}", f"out_dir={tmp_path / 'run'}",
        "finetune.epochs=2", "finetune.lr=1e-3", "finetune.batch_size=8", "finetune.max_length=64",
        "finetune.max_length_multilabel=64", "finetune.window_stride=16", "cluster=local", "resources.profile=local",
        "tracking.wandb=false",
    ]
    assert launch(EvaluateRunConfig, CONFIG, plan_evaluation, argv) == 0
    records = ResultStore(tmp_path / "results").records()
    metrics = ("micro_f1", "macro_f1", "micro_f1_top1", "macro_f1_top1")
    assert {(r.task, r.seed, r.metric) for r in records} == {("toy_codes", 42, m) for m in metrics}
    assert len(records) == 4
    assert all(r.extra["max_length"] == 64 for r in records)  # the cap given, recorded
    primary = [r for r in records if r.extra["primary"]]
    assert [r.metric for r in primary] == ["micro_f1"]
    assert all(0.0 <= r.value <= 1.0 and r.extra["best_epoch"] in (1, 2) and r.extra["train_time_s"] > 0 for r in records)
    assert records[0].extra["sizes"] == {"train": 40, "dev": 16, "test": 16}
    # A second launch finds every record and trains nothing.
    assert launch(EvaluateRunConfig, CONFIG, plan_evaluation, argv) == 0
    assert len(ResultStore(tmp_path / "results").records()) == 4


def test_task_declaration_errors_name_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("t:\n  type: ner\n  format: jsonl\n  splits: {train: a, dev: b, test: c}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml: task 't': format 'jsonl' is read as classification"):
        load_task_file(bad)
    bad.write_text("t:\n  type: ner\n  labels_field: x\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['labels_field'\]"):
        load_task_file(bad)


def test_paper_task_without_data_says_where_to_put_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"task 'fracco_30': data not found at .*/FRACCO\. FrACCO is published on Zenodo"):
        get_task("fracco_30").path("train", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"task 'diamed': train split not found at .*diamed/splits/train\.json\. "
                                                r"DiaMED is published by DrBenchmark"):
        get_task("diamed").path("train", str(tmp_path))
    with pytest.raises(KeyError, match="unknown task 'nope'"):
        get_task("nope")


def test_sliding_windows_cover_long_inputs_that_truncation_cuts(tiny_hf_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_hf_dir)
    text = " ".join(WORDS * 10)
    cut = encode_texts(tok, [text, "court"], [0, 1], max_length=32, long_inputs="truncate")
    windows = encode_texts(tok, [text, "court"], [0, 1], max_length=32, long_inputs="sliding_window", stride=8)
    assert len(cut) == 2 and len(cut[0].input_ids) == 32
    assert len(windows) > 3 and [f.example for f in windows].count(1) == 1
    assert all(f.target == 0 for f in windows if f.example == 0)
    words = WORDS * 10
    sentence = [(words, ["B-X" if w == "cancer" else "O" for w in words])]
    labels = {"O": 0, "B-X": 1}
    seen_cut = {w for f in encode_ner(tok, sentence, labels, 32) for w in f.word_index if w >= 0}
    seen_win = {w for f in encode_ner(tok, sentence, labels, 32, "sliding_window", 8) for w in f.word_index if w >= 0}
    assert len(seen_cut) < len(words) and seen_win == set(range(len(words)))


def test_sliding_windows_label_only_first_subtokens_of_the_full_encoding(tiny_hf_dir):
    """A word cut by a window boundary is labelled where its first sub-token is, never on a continuation."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_hf_dir)
    long_word = "anticonstitutionnellement"  # 8 sub-tokens with the tiny tokenizer
    pieces = tok(long_word, add_special_tokens=False)["input_ids"]
    assert len(pieces) >= 4 and pieces[0] not in pieces[1:]
    labels = {"O": 0, "B-X": 1}
    straddled = 0
    for before in range(16):
        words = ["le"] * before + [long_word] + ["patient"] * 12
        tags = ["O"] * before + ["B-X"] + ["O"] * 12
        full = tok(words, is_split_into_words=True, add_special_tokens=False)
        first_id = {}
        for pos, wid in enumerate(full.word_ids()):
            first_id.setdefault(wid, full["input_ids"][pos])
        feats = encode_ner(tok, [(words, tags)], labels, 16, "sliding_window", 4)
        seen = set()
        for f in feats:
            content = [i for i in f.input_ids if i not in tok.all_special_ids]
            straddled += content[0] in pieces[1:]  # this window opens inside the long word
            for pos, wid in enumerate(f.word_index):
                if wid >= 0:
                    assert f.input_ids[pos] == first_id[wid], (before, pos, wid)
                    assert (f.token_labels[pos] == 1) == (wid == before)
                    seen.add(wid)
        assert seen == set(range(len(words)))  # every word still labelled somewhere
    assert straddled > 0  # the boundary case was exercised


def test_input_length_defaults_to_the_model_context_and_caps_on_request(tiny_hf_dir):
    from transformers import AutoTokenizer

    from mcbio.evaluate.encoding import input_length

    tok = AutoTokenizer.from_pretrained(tiny_hf_dir)
    assert FinetuneConfig().max_length is None and FinetuneConfig().max_length_multilabel is None
    assert input_length(FinetuneConfig(), str(tiny_hf_dir), tok) == 256  # the model's max_position_embeddings
    assert input_length(FinetuneConfig(max_length=64), str(tiny_hf_dir), tok) == 64
    assert input_length(FinetuneConfig(max_length=64), str(tiny_hf_dir), tok, multi_label=True) == 256
    assert input_length(FinetuneConfig(max_length_multilabel=4096), str(tiny_hf_dir), tok, multi_label=True) == 256
    assert input_length(FinetuneConfig(max_context=100), str(tiny_hf_dir), tok) == 100


def test_sliding_window_classifier_trains_and_aggregates(task_file, tiny_hf_dir):
    from mcbio.evaluate.run import evaluate_task

    spec = load_task_file(task_file)["toy_codes"]
    cfg = FinetuneConfig(epochs=1, lr=1e-3, batch_size=8, max_length=16, max_length_multilabel=16,
                         long_inputs="sliding_window", window_stride=4)
    res = evaluate_task(str(tiny_hf_dir), spec, 42, cfg, None)
    assert set(res["metrics"]) == {"micro_f1", "macro_f1", "micro_f1_top1", "macro_f1_top1"} and res["max_length"] == 16
    assert res["sizes"]["test"] == 16


def test_hp_search_picks_the_best_validation_point_and_is_cached(task_file, tiny_hf_dir, tmp_path, monkeypatch):
    import mcbio.evaluate.run as run_mod

    spec = load_task_file(task_file)["toy_codes"]
    cfg = FinetuneConfig(epochs=1, batch_size=8, max_length=32, max_length_multilabel=32, window_stride=8)
    cfg.hp_search.lr = [1e-2, 1e-7]
    splits = run_mod.read_splits(spec, None, cfg)
    found = run_mod.search_hyperparameters(str(tiny_hf_dir), spec, splits, cfg, "cpu", tmp_path)
    assert [t["params"] for t in found["trials"]] == [{"lr": 1e-2}, {"lr": 1e-7}]
    assert found["best"] == max(found["trials"], key=lambda t: t["dev_score"])["params"]
    # Another element of the same array reads the cached search instead of training again.
    monkeypatch.setattr(run_mod, "finetune", lambda *a, **k: pytest.fail("search was not cached"))
    assert run_mod.search_hyperparameters(str(tiny_hf_dir), spec, splits, cfg, "cpu", tmp_path) == found


def test_hp_search_runs_again_for_a_model_retrained_in_the_same_folder(task_file, tiny_hf_dir, tmp_path, monkeypatch):
    import shutil

    from safetensors.torch import load_file, save_file

    import mcbio.evaluate.run as run_mod

    model = tmp_path / "model"
    shutil.copytree(tiny_hf_dir, model)
    spec = load_task_file(task_file)["toy_codes"]
    cfg = FinetuneConfig(epochs=1, batch_size=8, max_length=32, max_length_multilabel=32, window_stride=8)
    cfg.hp_search.lr = [1e-2]
    calls = []
    monkeypatch.setattr(run_mod, "finetune", lambda *a, **k: calls.append(1) or {"dev_score": 0.5})
    splits = run_mod.read_splits(spec, None, cfg)
    run_mod.search_hyperparameters(str(model), spec, splits, cfg, "cpu", tmp_path / "cache")
    run_mod.search_hyperparameters(str(model), spec, splits, cfg, "cpu", tmp_path / "cache")
    assert len(calls) == 1
    weights = load_file(model / "model.safetensors")
    save_file({k: v + 1.0 if v.is_floating_point() else v for k, v in weights.items()}, model / "model.safetensors",
              metadata={"format": "pt"})
    run_mod.search_hyperparameters(str(model), spec, splits, cfg, "cpu", tmp_path / "cache")
    assert len(calls) == 2
