"""A real smoke grid (tiny model, tiny budget, 2 cells) as job arrays chained on the local Slurm."""

import json
from pathlib import Path

import pytest

from mcbio.cluster.launcher import launch
from mcbio.cluster.registry import JobRegistry
from mcbio.config.grid import GridRunConfig
from mcbio.config.loader import load_config
from mcbio.config.report import ReportRunConfig
from mcbio.pipelines.grid import plan_grid
from mcbio.pipelines.report import generate_report
from mcbio.results.records import ResultStore

REPO = Path(__file__).resolve().parents[2]
SMOKE_BUDGET = [
    "selection.enabled=true", "tracking.wandb=false", "resources.profile=local_slurm",
    "train.phases.stable.tokens=16384", "train.phases.stable.warmup_tokens=2048", "train.phases.decay.tokens=4096",
    "evaluation.finetune.epochs=1",
]


@pytest.mark.slurm
@pytest.mark.slow
def test_smoke_grid_runs_as_slurm_arrays_and_its_table_regenerates(tmp_path):
    results = tmp_path / "results"
    argv = ["preset=smoke", "cluster=slurm", f"out_dir={tmp_path / 'run'}", f"results_dir={results}",
            "only_cells=[none,no_research_findings]", "common_overrides=[" + ",".join(SMOKE_BUDGET) + "]"]
    assert launch(GridRunConfig, REPO / "ablations" / "content_types" / "grid.yaml", plan_grid, argv) == 0
    jobs = JobRegistry(tmp_path / "run").read()
    by_stage: dict[str, set[str]] = {}
    for entry in jobs.values():
        by_stage.setdefault(entry["stage"], set()).add(entry["job_id"].split("_")[0])
    # One Slurm array per stage, both cells in it.
    assert set(by_stage) == {"select", "pretrain", "evaluate", "report", "table"}
    assert all(len(ids) == 1 for ids in by_stage.values()), by_stage
    assert sum(1 for e in jobs.values() if e["stage"] == "pretrain") == 2

    store = ResultStore(results)
    assert {r.extra["cell"] for r in store.records("content_types")} == {"none", "no_research_findings"}
    assert len(store.runs()) == 2
    grid_table = (store.tables_dir / "content_types.tex").read_text(encoding="utf-8")
    assert "no\\_research\\_findings" in grid_table and "mini\\_ner" in grid_table

    # The report regenerates Table 1 from the store alone.
    (store.tables_dir / "content_types.tex").unlink()
    cfg = load_config(ReportRunConfig, REPO / "experiments/report/config.yaml",
                      [f"results_dir={results}", "tracking.wandb=false"])
    summary = generate_report(cfg)
    table1 = (store.tables_dir / "table1_content_types.tex").read_text(encoding="utf-8")
    assert "none" in table1 and "no\\_research\\_findings" in table1, summary["skipped"]
    assert json.loads((tmp_path / "run" / "none" / "selection.json").read_text())["kept"] > 0
