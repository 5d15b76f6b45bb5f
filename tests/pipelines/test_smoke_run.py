"""The smoke run writes the output contract: hf/, results/*.jsonl, tables/*.tex, offline W&B files."""

from __future__ import annotations

import json

import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

from tests.conftest import run_launcher

RECORD_KEYS = {"model", "task", "seed", "metric", "value", "config_hash", "commit"}


def test_hf_export_loads_and_fills_masks(smoke_run):
    hf = smoke_run / "hf"
    model = AutoModelForMaskedLM.from_pretrained(hf, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(hf, local_files_only=True)
    assert model.config.model_type == "modernbert"
    fill = pipeline("fill-mask", model=model, tokenizer=tokenizer)
    answers = fill(f"Le patient présente une {tokenizer.mask_token} cardiaque.")
    assert len(answers) == 5 and all(0.0 <= a["score"] <= 1.0 for a in answers)
    # Tiny, briefly trained: still it must have learnt something beyond uniform guessing.
    assert answers[0]["score"] > 1.0 / len(tokenizer)


def test_results_records_and_table(smoke_run):
    lines = (smoke_run / "results" / "mini_ner.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert {r["metric"] for r in records} == {"strict_f1", "lenient_f1"}
    for rec in records:
        assert RECORD_KEYS <= rec.keys()
        assert rec["task"] == "mini_ner" and rec["seed"] == 42 and rec["model"] == "base_clm_detour"
        assert 0.0 <= rec["value"] <= 1.0 and len(rec["commit"]) >= 7
    table = (smoke_run / "tables" / "results.tex").read_text()
    assert r"\toprule" in table and "mini\\_ner (strict\\_f1)" in table
    strict = next(r["value"] for r in records if r["metric"] == "strict_f1")
    assert f"{100 * strict:.1f}" in table


def test_both_phases_ran_and_wandb_is_offline(smoke_run):
    log = "".join(p.read_text(errors="replace") for p in (smoke_run / "submitit").glob("*_log.*"))
    assert "phase switch at batch 40: stable -> decay" in log
    assert list((smoke_run / "wandb").glob("offline-run-*")), "no offline W&B run under the run directory"
    assert (smoke_run / "checkpoints" / "latest-rank0.pt").exists()


def test_relaunch_resumes_and_skips_finished_work(smoke_run):
    before = (smoke_run / "results" / "mini_ner.jsonl").read_text()
    weights = torch.load(smoke_run / "checkpoints" / "latest-rank0.pt", map_location="cpu", weights_only=False)
    assert weights["state"]["timestamp"]["Timestamp"]["batch"] == 50
    proc = run_launcher("base_clm_detour", "preset=smoke", f"out_dir={smoke_run}", "tracking.wandb=false")
    assert "skip mini_ner seed 42: record exists" in proc.stdout + proc.stderr
    assert (smoke_run / "results" / "mini_ner.jsonl").read_text() == before
