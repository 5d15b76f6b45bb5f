"""A toy multi-label task declared in YAML (a task file and its JSONL splits), for the evaluation tests."""

from __future__ import annotations

import json
import random

import pytest

WORDS = "patient douleur traitement dose cancer tumeur fièvre toux rein foie coeur poumon".split()


def write_jsonl(path, n, seed):
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(n):
            words = rng.choices(WORDS, k=rng.randint(5, 30))
            labels = sorted({w for w in words if w in ("cancer", "fièvre", "rein")}) or ["autre"]
            handle.write(json.dumps({"texte": " ".join(words), "codes": labels}, ensure_ascii=False) + "\n")


@pytest.fixture()
def task_file(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for split, n in (("train", 40), ("dev", 16), ("test", 16)):
        write_jsonl(data / f"{split}.jsonl", n, seed=len(split))
    file = tmp_path / "tasks.yaml"
    file.write_text(
        "toy_codes:\n  type: multi_label\n  format: jsonl\n  root: data\n"
        "  splits: {train: train.jsonl, dev: dev.jsonl, test: test.jsonl}\n"
        "  text_field: texte\n  label_field: codes\n",
        encoding="utf-8",
    )
    return file


