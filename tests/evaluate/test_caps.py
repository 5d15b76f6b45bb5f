"""What a fine-tuning config cuts short is listed (printed at launch) and returned (recorded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcbio.config.schema import FinetuneConfig
from mcbio.evaluate.caps import applied_caps, describe_caps

REPO = Path(__file__).resolve().parents[2]


def test_defaults_cap_nothing():
    assert describe_caps(FinetuneConfig()) == []
    assert applied_caps(FinetuneConfig()) == {"max_train_examples": None, "max_eval_examples": None}


def test_every_shortening_is_listed_and_a_dev_test_cap_says_so():
    cfg = FinetuneConfig(epochs=2, max_length=128, max_length_multilabel=128, early_stopping_patience=1,
                         max_train_examples=96, max_eval_examples=64, lr=5e-4, batch_size=16)
    lines = describe_caps(cfg)
    keys = [line.split("=", 1)[0] for line in lines]
    assert keys == ["max_train_examples", "max_eval_examples", "epochs", "max_length", "max_length_multilabel",
                    "early_stopping_patience"]  # lr and batch size change the recipe, they cut nothing
    assert "dev AND test" in lines[1] and "(default: all)" in lines[1]
    assert lines[2] == "epochs=2: training stops after 2 epochs (default: 15)"
    assert applied_caps(cfg) == {"max_train_examples": 96, "max_eval_examples": 64, "epochs": 2, "max_length": 128,
                                 "max_length_multilabel": 128, "early_stopping_patience": 1}
    # Longer or more patient than the defaults is no cap.
    assert describe_caps(FinetuneConfig(epochs=20, early_stopping_patience=None)) == []
    search = FinetuneConfig(epochs=10)
    search.hp_search.lr, search.hp_search.epochs = [1e-5, 2e-5], 3
    assert applied_caps(search)["hp_search_epochs"] == 3 and describe_caps(search)[-1].startswith("hp_search.epochs=3")


def test_describe_caps_on_the_smoke_preset():
    from mcbio.config.evaluation import EvaluateRunConfig
    from mcbio.config.loader import load_config

    cfg = load_config(EvaluateRunConfig, REPO / "experiments" / "evaluate" / "config.yaml", ["preset=smoke"])
    ft = cfg.finetune
    lines = describe_caps(ft)
    listed = {line.split("=", 1)[0] for line in lines}
    # Whatever the preset shortens shows up, with its value.
    for key, default in (("epochs", 15), ("early_stopping_patience", 3)):
        if getattr(ft, key) < default:
            assert f"{key}={getattr(ft, key)}: " in "\n".join(lines)
    for key in ("max_train_examples", "max_eval_examples", "max_length", "max_length_multilabel"):
        assert (key in listed) == (getattr(ft, key) is not None), key
    assert listed == set(applied_caps(ft)) - {k for k, v in applied_caps(ft).items() if v is None}
    # The smoke preset scores the full dev and test splits.
    assert ft.max_eval_examples is None and "max_eval_examples" not in listed


def test_evaluate_task_returns_the_caps_it_applied(tiny_hf_dir):
    from mcbio.evaluate.run import evaluate_task

    cfg = FinetuneConfig(epochs=1, lr=1e-3, batch_size=16, max_length=32, max_train_examples=40, max_eval_examples=20)
    res = evaluate_task(str(tiny_hf_dir), "mini_ner", 42, cfg, None)
    assert res["sizes"] == {"train": 40, "dev": 20, "test": 20}
    assert res["caps"] == {"max_train_examples": 40, "max_eval_examples": 20, "epochs": 1, "max_length": 32,
                           "full_sizes": {"train": 262, "dev": 60, "test": 60}}
    assert res["init"] == "pretrained"
    with pytest.raises(ValueError, match="init='zero'"):
        evaluate_task(str(tiny_hf_dir), "mini_ner", 42, cfg, None, init="zero")
