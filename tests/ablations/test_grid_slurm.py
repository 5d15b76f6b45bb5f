"""A real smoke grid (tiny model, tiny budget, 2 cells) as a job array on the local Slurm."""

import json

import pytest

from mcbio.config.loader import REPO_ROOT, load_config
from mcbio.config.report import ReportRunConfig
from mcbio.pipelines.grid import DONE_MARKER, launch_grid
from mcbio.pipelines.report import generate_report
from mcbio.results.records import ResultStore

SMOKE_BUDGET = [
    "selection.enabled=true", "tracking.wandb=false", "resources.profile=local_slurm",
    "train.phases.stable.tokens=16384", "train.phases.stable.warmup_tokens=2048", "train.phases.decay.tokens=4096",
    "evaluation.finetune.epochs=1",
]


@pytest.mark.slurm
@pytest.mark.slow
def test_smoke_grid_runs_as_slurm_array_and_its_table_regenerates(tmp_path, capsys):
    results = tmp_path / "results"
    argv = ["preset=smoke", "cluster=slurm", f"out_dir={tmp_path / 'run'}", f"results_dir={results}",
            "only_cells=[none,no_research_findings]", "common_overrides=[" + ",".join(SMOKE_BUDGET) + "]"]
    assert launch_grid(REPO_ROOT / "ablations" / "content_types" / "grid.yaml", argv) == 0
    out = capsys.readouterr().out
    submitted = next(line for line in out.splitlines() if "submitted as job(s)" in line)
    job_ids = submitted.rsplit("job(s) ", 1)[1].split(", ")
    assert len(job_ids) == 2 and all("_" in j for j in job_ids), submitted  # Slurm array tasks: <array>_<index>
    assert len({j.split("_")[0] for j in job_ids}) == 1  # one array

    for cell in ("none", "no_research_findings"):
        done = json.loads((tmp_path / "run" / cell / DONE_MARKER).read_text())
        assert done["records_added"] > 0
    store = ResultStore(results)
    assert {r.extra["cell"] for r in store.records("content_types")} == {"none", "no_research_findings"}
    assert len(store.runs()) == 2
    grid_table = (store.tables_dir / "content_types.tex").read_text(encoding="utf-8")
    assert "no\\_research\\_findings" in grid_table and "mini\\_ner" in grid_table

    # The report regenerates Table 1 from the store alone.
    (store.tables_dir / "content_types.tex").unlink()
    cfg = load_config(ReportRunConfig, REPO_ROOT / "experiments/report/config.yaml",
                      [f"results_dir={results}", "tracking.wandb=false"])
    summary = generate_report(cfg)
    table1 = (store.tables_dir / "table1_content_types.tex").read_text(encoding="utf-8")
    assert "none" in table1 and "no\\_research\\_findings" in table1, summary["skipped"]
