"""The smoke run writes the output contract: hf/, records in the results store, its table, offline W&B files."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

from tests.conftest import REPO, run_launcher

RECORD_KEYS = {"model", "task", "seed", "metric", "value", "config_hash", "commit"}
RUN = "base_clm_detour-smoke"


def store_of(smoke_run):
    return smoke_run.parent / "results"


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
    marker = json.loads((hf / "mcbio_run.json").read_text())
    assert marker["run"] == RUN
    # The inputs it trained on (the sample corpus, no data.corpus set) decide whether it is done.
    assert len(marker["inputs"]["corpus"]) == 64 and marker["inputs"]["corpus_files"]


def test_records_reach_the_store_under_the_run_name_and_the_table(smoke_run):
    lines = (store_of(smoke_run) / "records" / f"{RUN}.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert {r["metric"] for r in records} >= {"strict_f1", "lenient_f1"}
    from mcbio.model.fingerprint import model_fingerprint

    assert {r["model_fingerprint"] for r in records} == {model_fingerprint(smoke_run / "hf")}
    for rec in records:
        assert RECORD_KEYS <= rec.keys()
        assert rec["task"] == "mini_ner" and rec["seed"] == 42 and rec["model"] == RUN
        assert 0.0 <= rec["value"] <= 1.0 and len(rec["commit"]) >= 7
        assert rec["extra"]["degenerate"] is None and "caps" in rec["extra"]
    table = (smoke_run / "tables" / "results.tex").read_text()
    assert r"\toprule" in table and "mini\\_ner (strict\\_f1)" in table
    strict = next(r["value"] for r in records if r["metric"] == "strict_f1")
    assert f"{100 * strict:.1f}" in table
    runs = [json.loads(l) for l in (store_of(smoke_run) / "runs" / f"{RUN}.jsonl").read_text().splitlines()]
    assert runs[0]["model"] == RUN and runs[0]["wall_s"] > 0


def test_the_report_sees_the_run_with_no_other_step(smoke_run, tmp_path):
    store = store_of(smoke_run)
    proc = subprocess.run([sys.executable, "-m", "mcbio.results", "report", f"results_dir={store}",
                           "tracking.wandb=false"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (store / "tables" / "repository_results.tex").read_text()
    strict = next(json.loads(l)["value"] for l in (store / "records" / f"{RUN}.jsonl").read_text().splitlines()
                  if json.loads(l)["metric"] == "strict_f1")
    assert RUN.replace("_", "\\_") in table and f"{100 * strict:.1f}" in table


def test_both_phases_ran_and_wandb_is_offline(smoke_run):
    log = "".join(p.read_text(errors="replace") for p in (smoke_run / "submitit" / "pretrain").glob("*_log.*"))
    assert "phase switch at batch 40: stable -> decay" in log
    assert list((smoke_run / "wandb").glob("offline-run-*")), "no offline W&B run under the run directory"
    assert (smoke_run / "checkpoints" / "latest-rank0.pt").exists()


def test_the_evaluation_launcher_finds_the_same_evaluation_done(smoke_run):
    """Same (model, task, seed, settings): the evaluation launcher plans it as done, by the store's one key."""
    from mcbio.cluster.launcher import LaunchContext
    from mcbio.config import PretrainRunConfig, load_config
    from mcbio.config.loader import to_container
    from mcbio.config.evaluation import EvaluateRunConfig
    from mcbio.pipelines.evaluate import plan_evaluation

    run_cfg = load_config(PretrainRunConfig, REPO / "experiments" / "base_clm_detour" / "config.yaml", ["preset=smoke"])
    finetune = [f"finetune.{k}={json.dumps(v)}" for k, v in to_container(run_cfg.evaluation.finetune).items()
                if not isinstance(v, dict)]
    cfg = load_config(EvaluateRunConfig, None, ["cluster=local", f"model.path={smoke_run / 'hf'}", "tasks=[mini_ner]",
                                                "seeds=[42]", f"results_dir={store_of(smoke_run)}", *finetune])
    plan = plan_evaluation(cfg, LaunchContext("local", None))
    [element] = plan.elements()
    assert element.cfg.model_name == RUN and element.done()
    # Another seed is a different element, not done.
    other = plan_evaluation(dataclasses.replace(cfg, seeds=[43]), LaunchContext("local", None)).elements()[0]
    assert not other.done()


def test_relaunch_finds_everything_done_and_changes_nothing(smoke_run):
    records = store_of(smoke_run) / "records" / f"{RUN}.jsonl"
    before = records.read_text()
    weights = torch.load(smoke_run / "checkpoints" / "latest-rank0.pt", map_location="cpu", weights_only=False)
    assert weights["state"]["timestamp"]["Timestamp"]["batch"] == 50
    proc = run_launcher("base_clm_detour", "preset=smoke", f"out_dir={smoke_run}",
                        f"evaluation.results_dir={store_of(smoke_run)}")
    assert "nothing to run, every element is done" in proc.stdout
    assert records.read_text() == before
