import json
from pathlib import Path

import pytest

from mcbio.config.loader import load_config
from mcbio.config.report import ReportRunConfig
from mcbio.pipelines.report import generate_report
from mcbio.results.records import ResultRecord, ResultStore, RunRecord

REPO = Path(__file__).resolve().parents[2]
REPORT_YAML = REPO / "experiments" / "report" / "config.yaml"


def rec(model, task, seed, value, **extra):
    return ResultRecord(model=model, task=task, seed=seed, metric="f1", value=value, config_hash="h", commit="c",
                        extra={"primary": True, **extra})


def test_report_without_reference_records_says_how_to_make_them(tmp_path):
    cfg = load_config(ReportRunConfig, REPORT_YAML, [f"results_dir={tmp_path / 'results'}", "tracking.wandb=false"])
    summary = generate_report(cfg)
    assert "python -m mcbio.results reference" in summary["skipped"]["table3_main"]
    assert Path(summary["tables"][0]).name == "training_mix.tex"  # what needs no record is still written


def test_reference_command_writes_and_checks(tmp_path, paper_dir):
    from mcbio.results.__main__ import main

    args = [f"results_dir={tmp_path / 'results'}", f"paper_dir={paper_dir}"]
    assert main(["reference", *args, "--check"]) == 1  # nothing there yet: stale
    assert main(["reference", *args]) == 0
    assert main(["reference", *args, "--check"]) == 0
    assert sorted(p.name for p in (tmp_path / "results" / "reference").glob("*.jsonl")) == sorted(
        f"{p.stem}.jsonl" for p in paper_dir.glob("*.csv"))


@pytest.mark.slow
def test_report_regenerates_every_view(tmp_path, tiny_hf_dir, tiny_tokenizer, tiny_model_factory):
    import shutil

    import torch

    from mcbio.model.export import export_hf

    store = ResultStore(tmp_path / "results")
    (store.root / "reference").mkdir(parents=True)
    for f in (REPO / "results" / "reference").glob("*.jsonl"):
        shutil.copy(f, store.root / "reference" / f.name)
    recs = []
    for seed in (42, 43):
        for task, (a, b) in {"diamed": (0.70, 0.65), "cantemist": (0.60, 0.62), "quaero_emea": (0.55, 0.50)}.items():
            recs += [rec("base_clm_detour", task, seed, a + 0.01 * (seed - 42)), rec("base_mlm_control", task, seed, b)]
    store.add(recs, "main")
    store.add([rec("content_types.none", "t1", 42, 0.5, cell="none"),
               rec("content_types.no_other", "t1", 42, 0.6, cell="no_other")], "content_types")
    store.add_run(RunRecord(model="base_clm_detour", config_hash="h", gpu_hours=100.0, num_gpus=4, wall_s=90000.0,
                            gpu_type="H100", commit="c"), "main")
    stats = tmp_path / "curation_stats.json"
    stats.write_text(json.dumps({"fidelity": {"scores": [1.0, 0.97, 0.6]}, "mix": {"articles": 7.0e9, "e3c": 0.4e9}}))
    model = tiny_model_factory(seed=3)
    with torch.no_grad():
        for p in model.model.layers[0].parameters():
            p.add_(0.3 * torch.randn_like(p))
    export_hf(model, tiny_tokenizer, tmp_path / "clm_end")
    cfg = load_config(ReportRunConfig, REPORT_YAML, [
        f"results_dir={store.root}", f"out_dir={tmp_path / 'report_run'}", "tracking.mode=offline",
        "ablation_grids={table1_content_types: content_types}",
        "lengths.tasks=[mini_ner]", f"lengths.tokenizers={{tiny: {tiny_hf_dir}}}", f"curation_stats={stats}",
        "layer_change.enabled=true", f"layer_change.start={tiny_hf_dir}",
        f"layer_change.runs={{clm: [{tmp_path / 'clm_end'}], mlm: [{tiny_hf_dir}]}}", "layer_change.max_texts=4",
        "decimal_comma=true",
    ])
    summary = generate_report(cfg)
    names = {Path(t).stem for t in summary["tables"]}
    assert {"table1a_content_types", "table1b_quality_filters", "table1_content_types", "table3_main",
            "table4_clm_vs_mlm", "table5_carbon", "table6_lengths", "table7_upsampling", "table8_fidelity",
            "training_mix", "drbenchmark_doctobert"} <= names, summary["skipped"]
    figs = {Path(f).name for f in summary["figures"]}
    assert {"figure2_per_task_gain.png", "figure2_per_task_gain.pdf", "layer_change.png", "layer_change.pdf"} <= figs
    t4 = (store.tables_dir / "table4_clm_vs_mlm.tex").read_text(encoding="utf-8")
    assert "Base: DiaMed & \\textbf{67{,}4} & 63{,}4 & +4{,}0 & 70{,}5" in t4 and "tasks won" in t4
    t5 = (store.tables_dir / "table5_carbon.tex").read_text(encoding="utf-8")
    assert "base\\_clm\\_detour (this repository) & 25{,}0 & 4xH100 & 100{,}0 & 84{,}0 & 2{,}86" in t5  # 100 GPU-h x 0.7 kW x 1.2 x 34 g
    assert list((tmp_path / "report_run" / "wandb").glob("offline-run-*")), "report not logged to W&B offline"
