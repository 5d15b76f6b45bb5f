import json
from pathlib import Path

import pytest

from mcbio.config.grid import DataSelectionConfig, GridRunConfig
from mcbio.cluster.launcher import LaunchContext, element_states, launch
from mcbio.config.loader import ConfigError, load_config
from mcbio.pipelines.grid import build_cells, cell_overrides, plan_grid, select_passages

REPO = Path(__file__).resolve().parents[2]
GRIDS = sorted((REPO / "ablations").glob("*/grid.yaml"))


@pytest.mark.parametrize("grid_file", GRIDS, ids=[g.parent.name for g in GRIDS])
@pytest.mark.parametrize("preset", [None, "smoke"])
def test_shipped_grids_build_valid_cells(grid_file, preset, tmp_path):
    grid = load_config(GridRunConfig, grid_file, [f"preset={preset}"] if preset else [])
    cells = build_cells(grid, tmp_path, grid_file)
    assert cells and len({c.cell_name for c in cells}) == len(cells)
    assert all(f"grid:{grid.name}" in c.tracking.tags and c.tracking.group == grid.name for c in cells)
    assert len({c.out_dir for c in cells}) == len(cells)


def test_content_type_grid_covers_the_nine_types_and_a_random_control(tmp_path):
    from mcbio.config.grid import CONTENT_TYPES

    grid_file = REPO / "ablations/content_types/grid.yaml"
    grid = load_config(GridRunConfig, grid_file)
    cells = {c.cell_name: c for c in build_cells(grid, tmp_path, grid_file)}
    dropped = sorted(t for c in cells.values() for t in c.selection.drop_types)
    assert dropped == sorted(CONTENT_TYPES)
    assert cells["random_removal"].selection.random_drop_fraction == pytest.approx(1 / 9, abs=1e-3)


def test_typo_in_a_cell_fails_before_submission(tmp_path):
    base = f"base_config={REPO / 'experiments/base_clm_detour/config.yaml'}"
    grid = load_config(GridRunConfig, None, ["name=g", base, "cells.ok=[]", "cells.bad=[train.phases.stable.tokns=1]"])
    with pytest.raises(ConfigError, match=r"cell 'bad'.*tokns"):
        build_cells(grid, tmp_path)
    grid = load_config(GridRunConfig, None, ["name=g", base, "cells.bad=[selection.min_scores.edux=7]"])
    with pytest.raises(ConfigError, match="edux"):
        build_cells(grid, tmp_path)


def test_product_expands_cells(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("name: g\nproduct:\n  selection.min_scores.edu: [5, 7]\n  train.seed: [1, 2]\n", encoding="utf-8")
    grid = load_config(GridRunConfig, path)
    cells = cell_overrides(grid)
    assert cells["edu=7,seed=2"] == ["selection.min_scores.edu=7", "train.seed=2"]
    assert len(cells) == 4


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_selection_by_type_quality_and_random(tmp_path):
    rows = [{"id": str(i), "text": f"passage {i}", "type": "other" if i % 3 == 0 else "patient_case",
             "edu": i % 10 + 1, "cont": 8, "writ": 5, "term": 9} for i in range(300)]
    src = _write(tmp_path / "a.jsonl", rows)
    kept, counts = select_passages(DataSelectionConfig(enabled=True, drop_types=["other"]), src)
    assert counts["dropped_type"] == 100 and all(r["type"] != "other" for r in kept)
    kept, _ = select_passages(DataSelectionConfig(enabled=True, min_scores={"edu": 7, "cont": 7}), src)
    assert len(kept) == 120 and all(r["edu"] >= 7 for r in kept)
    first, c1 = select_passages(DataSelectionConfig(enabled=True, random_drop_fraction=0.2, seed=1), src)
    again, _ = select_passages(DataSelectionConfig(enabled=True, random_drop_fraction=0.2, seed=1), src)
    assert [r["id"] for r in first] == [r["id"] for r in again]
    assert 30 <= c1["dropped_random"] <= 90
    balanced, _ = select_passages(DataSelectionConfig(enabled=True, max_per_type=10), src)
    assert len(balanced) == 20


def test_missing_annotation_names_file_and_line(tmp_path):
    src = _write(tmp_path / "b.jsonl", [{"text": "a", "edu": 8}, {"text": "b"}])
    with pytest.raises(ValueError, match=r"b.jsonl:2: passage has no edu"):
        select_passages(DataSelectionConfig(enabled=True, min_scores={"edu": 7}), src)
    kept, _ = select_passages(DataSelectionConfig(enabled=True, min_scores={"edu": 7}, missing_annotation="drop"), src)
    assert [r["text"] for r in kept] == ["a"]


def _grid_file(tmp_path: Path, source: Path) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(f"""
name: relaunch
base_config: {REPO / 'experiments/base_clm_detour/config.yaml'}
cell_preset: smoke
cluster: local
out_dir: {tmp_path / 'run'}
results_dir: {tmp_path / 'results'}
common_overrides: ["stages=[report]", tracking.wandb=false, selection.enabled=true, "selection.source={source}"]
cells:
  a: []
  b: ["selection.drop_types=[other]"]
""", encoding="utf-8")
    return path


def test_a_missing_selection_source_stops_the_grid_at_launch(tmp_path, capsys):
    grid_yaml = _grid_file(tmp_path, tmp_path / "late.jsonl")
    assert launch(GridRunConfig, grid_yaml, plan_grid, []) == 2
    assert "late.jsonl does not exist" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_relaunched_grid_runs_only_missing_or_changed_cells(tmp_path, capsys):
    source = tmp_path / "annotated.jsonl"
    _write(source, [{"id": str(i), "text": f"passage {i}", "type": "other" if i % 3 == 0 else "patient_case",
                     "edu": 8, "cont": 8, "writ": 8, "term": 8} for i in range(30)])
    grid_yaml = _grid_file(tmp_path, source)
    assert launch(GridRunConfig, grid_yaml, plan_grid, []) == 0
    run = tmp_path / "run"
    assert json.loads((run / "b" / "selection.json").read_text())["kept"] == 20
    stamps = {c: (run / c / "data" / "selected.jsonl").stat().st_mtime_ns for c in "ab"}
    grid = load_config(GridRunConfig, grid_yaml)
    states = element_states(plan_grid(grid, LaunchContext("local", grid_yaml)), "local")
    assert states["a/select"] == states["b/select"] == "done"
    # A changed cell is a different cell: its selection is pending again, the other stays done.
    changed = load_config(GridRunConfig, grid_yaml, ["cells.b=['selection.drop_types=[patient_case]']"])
    states = element_states(plan_grid(changed, LaunchContext("local", grid_yaml)), "local")
    assert states["a/select"] == "done" and states["b/select"] == "pending"
    assert launch(GridRunConfig, grid_yaml, plan_grid, ["cells.b=['selection.drop_types=[patient_case]']"]) == 0
    assert (run / "a" / "data" / "selected.jsonl").stat().st_mtime_ns == stamps["a"]
    assert json.loads((run / "b" / "selection.json").read_text())["kept"] == 10
