"""Ablation grids as job arrays: typed cells, each a pretraining run, planned through the one launcher.

Every cell is loaded from ``base_config`` with the grid's ``common_overrides`` and its own
overrides (through ``load_config``, so a typo names the cell and the key before anything
is submitted). The grid's plan is the union of its cells' stages -- ``select`` (cells
that filter an annotated corpus), ``pretrain``, ``evaluate``, ``report`` -- each one array,
plus the grid's table. An element is done by the same tests as in a single run (the
export marker holds the cell's config hash, records are in the store), so a relaunch
submits only missing, failed or changed work.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from mcbio.cluster.launcher import LaunchContext, element_name, run_dir_of
from mcbio.cluster.plan import Element, Plan, Stage, single_task
from mcbio.config.checks import Problems, check_output_dirs
from mcbio.config.grid import DataSelectionConfig, GridCellConfig, GridRunConfig
from mcbio.config.loader import ConfigError, config_hash, load_config, to_container
from mcbio.files import json_marker_matches, write_json_atomic, write_jsonl_atomic
from mcbio.jsonl import iter_jsonl
from mcbio.pipelines.pretrain import pretraining_stages, stages_of
from mcbio.results.records import ResultStore
from mcbio.seeding import stable_unit

log = logging.getLogger(__name__)

CELL_NAME = re.compile(r"^[A-Za-z0-9_.,=+-]+$")
SELECTED_CORPUS = Path("data") / "selected.jsonl"


# --------------------------------------------------------------------------- cells


def cell_overrides(grid: GridRunConfig) -> dict[str, list[str]]:
    """Cell name -> its dotlist, explicit cells first, then the product's combinations."""
    cells = {name: list(ovs) for name, ovs in grid.cells.items()}
    if grid.product:
        keys = list(grid.product)
        for combo in itertools.product(*(grid.product[k] for k in keys)):
            name = ",".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in zip(keys, combo))
            cells[name] = [f"{k}={v}" for k, v in zip(keys, combo)]
    for name in cells:
        if not CELL_NAME.match(name):
            raise ConfigError(f"grid '{grid.name}': cell name {name!r} may only use letters, digits and _.,=+-")
    if grid.only_cells:
        unknown = [c for c in grid.only_cells if c not in cells]
        if unknown:
            raise ConfigError(f"'only_cells': unknown cell(s) {', '.join(unknown)}. Cells: {', '.join(cells)}")
        cells = {c: cells[c] for c in grid.only_cells}
    return cells


def base_config_path(grid: GridRunConfig, grid_file: Path | None) -> Path:
    """``base_config``: absolute, or relative to the folder of the grid file that names it."""
    path = Path(grid.base_config).expanduser()
    if not path.is_absolute():
        path = (grid_file.parent if grid_file else Path.cwd()) / path
    if not path.is_file():
        raise ConfigError(f"'base_config': {path} not found (relative paths are from the grid file's folder)")
    return path.resolve()


def build_cells(grid: GridRunConfig, grid_out: Path, grid_file: Path | None = None) -> list[GridCellConfig]:
    """Every cell as a validated config, derived from overrides (never changed after loading)."""
    base = base_config_path(grid, grid_file)
    results_dir = Path(grid.results_dir).expanduser().resolve()
    cfgs = []
    for name, overrides in cell_overrides(grid).items():
        dotlist = [f"cluster={grid.cluster}", f"wait={str(grid.wait).lower()}"]
        if grid.cell_preset:
            dotlist.append(f"preset={grid.cell_preset}")
        tags = sorted(set(grid.tracking.tags) | {f"grid:{grid.name}", f"cell:{name}"})
        dotlist += list(grid.common_overrides) + list(overrides)
        dotlist += [f"name={grid.name}.{name}", f"out_dir={grid_out / name}",
                    f"grid_name={grid.name}", f"cell_name={name}", f"evaluation.results_dir={results_dir}",
                    f"tracking.group={grid.tracking.group or grid.name}", f"tracking.tags=[{','.join(tags)}]"]
        if grid.array_parallelism:
            dotlist.append(f"resources.array_parallelism={grid.array_parallelism}")
        try:
            cfg = load_config(GridCellConfig, base, dotlist)
            if cfg.selection.enabled:
                # The cell trains on the corpus its select element writes (see select_element).
                cfg = load_config(GridCellConfig, base, dotlist + [f"data.corpus={grid_out / name / SELECTED_CORPUS}"])
        except ConfigError as err:
            raise ConfigError(f"grid '{grid.name}', cell '{name}': {err}") from None
        cfgs.append(cfg)
    return cfgs


def selection_hash(cfg: GridCellConfig) -> str:
    return config_hash({"selection": to_container(cfg.selection), "source": selection_source(cfg)})


def selection_source(cfg: GridCellConfig) -> str:
    from mcbio.data.corpus import SAMPLE_CORPUS

    return str(Path(cfg.selection.source or SAMPLE_CORPUS).expanduser().resolve())


# --------------------------------------------------------------------------- data selection


def _annotated_rows(source: Path) -> Iterator[tuple[Path, int, dict]]:
    files = [source] if source.is_file() else sorted(source.rglob("*.jsonl"))
    if not files:
        raise FileNotFoundError(f"selection: no .jsonl files under {source}")
    for file in files:
        for line_no, row in iter_jsonl(file):
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise ValueError(f"{file}:{line_no}: a passage needs a string 'text' field")
            yield file, line_no, row


def select_passages(cfg, source: Path) -> tuple[list[dict], dict[str, int]]:
    """Apply a :class:`DataSelectionConfig` to annotated rows; return kept rows and counts."""
    counts = {"read": 0, "dropped_type": 0, "dropped_quality": 0, "dropped_random": 0, "dropped_balance": 0,
              "dropped_missing": 0}
    needs_type = bool(cfg.drop_types) or cfg.max_per_type is not None
    kept: list[dict] = []
    for file, line_no, row in _annotated_rows(source):
        counts["read"] += 1
        needed = (["type"] if needs_type else []) + list(cfg.min_scores)
        missing = [k for k in needed if row.get(k) is None]
        if missing:
            if cfg.missing_annotation == "error":
                raise ValueError(f"{file}:{line_no}: passage has no {', '.join(missing)} annotation "
                                 "(set selection.missing_annotation=keep|drop to allow it)")
            if cfg.missing_annotation == "drop":
                counts["dropped_missing"] += 1
                continue
        if row.get("type") in cfg.drop_types:
            counts["dropped_type"] += 1
            continue
        try:
            low = [k for k, thr in cfg.min_scores.items() if row.get(k) is not None and float(row[k]) < thr]
        except (TypeError, ValueError):
            raise ValueError(f"{file}:{line_no}: quality scores must be numbers") from None
        if low:
            counts["dropped_quality"] += 1
            continue
        row_id = str(row.get("id", f"{file.name}:{line_no}"))
        if cfg.random_drop_fraction and stable_unit(cfg.seed, row_id) < cfg.random_drop_fraction:
            counts["dropped_random"] += 1
            continue
        row.setdefault("id", row_id)
        kept.append(row)
    if cfg.max_per_type is not None:
        by_type: dict[str, list[dict]] = {}
        for row in kept:
            by_type.setdefault(str(row.get("type")), []).append(row)
        rng = random.Random(cfg.seed)
        balanced = []
        for rows in by_type.values():
            if len(rows) > cfg.max_per_type:
                rows = rng.sample(rows, cfg.max_per_type)
            balanced.extend(rows)
        counts["dropped_balance"] = len(kept) - len(balanced)
        kept = sorted(balanced, key=lambda r: str(r["id"]))
    counts["kept"] = len(kept)
    if not kept:
        raise ValueError(f"selection on {source} kept no passage ({counts})")
    return kept, counts


@dataclass(frozen=True)
class SelectionJob:
    """The select element of a cell: its selection, where to read, where to write."""

    selection: DataSelectionConfig
    source: str
    target: str
    selection_hash: str


def select_element(job: SelectionJob) -> dict:
    """Write the cell's selected corpus and its counts (``selection.json``, with the selection's hash)."""
    source = Path(job.source)
    if not source.exists():
        raise FileNotFoundError(f"selection.source: {source} does not exist")
    rows, counts = select_passages(job.selection, source)
    target = Path(job.target)
    write_jsonl_atomic(target, rows)
    write_json_atomic(target.parent.parent / "selection.json", {**counts, "selection_hash": job.selection_hash}, indent=1)
    log.info("selection %s -> %s: %s", source, target, counts)
    return counts


def _selection_done(out_dir: Path, h: str) -> bool:
    return (out_dir / SELECTED_CORPUS).is_file() and json_marker_matches(out_dir / "selection.json", selection_hash=h)


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class GridTableJob:
    name: str
    results_dir: str
    cells: tuple[str, ...]
    table: dict


def grid_table_element(job: GridTableJob) -> str:
    from mcbio.config.grid import GridTableConfig
    from mcbio.pipelines.report import grid_table
    from mcbio.results.latex import write_table

    store = ResultStore(job.results_dir)
    records = store.records(job.name)
    text = grid_table(records, job.name, list(job.cells), GridTableConfig(**job.table))
    return str(write_table(text, store.tables_dir / f"{job.name}.tex"))


def plan_grid(grid: GridRunConfig, ctx: LaunchContext) -> Plan:
    grid_out = run_dir_of(grid)
    cells = build_cells(grid, grid_out, ctx.config_file)
    problems = Problems()
    check_output_dirs(problems, grid, grid_out)
    select, pretrain, evaluate, report = [], [], [], []
    for cell in cells:
        out = Path(cell.out_dir)
        if cell.selection.enabled:
            h = selection_hash(cell)
            source = selection_source(cell)
            if not Path(source).exists():
                problems.add(f"cells.{cell.cell_name}: selection.source", f"{source} does not exist")
            select.append(Element(key=element_name(cell.cell_name, "select"), entry="mcbio.pipelines.grid:select_element",
                                  cfg=SelectionJob(cell.selection, source, str(out / SELECTED_CORPUS), h),
                                  done=lambda out=out, h=h: _selection_done(out, h),
                                  describe=lambda r: f"kept {r.get('kept')} of {r.get('read')}"))
        cell_problems = Problems()
        p, e, r, _ = pretraining_stages(cell, cell_problems, key_prefix=f"{cell.cell_name}/", experiment=grid.name,
                                        record_tags={"grid": grid.name, "cell": cell.cell_name})
        # The selected corpus does not exist before its select element has run.
        problems.items += [f"cell '{cell.cell_name}': {i}" for i in cell_problems.items
                           if not (cell.selection.enabled and i.startswith("'data.corpus'"))]
        pretrain += p
        evaluate += e
        report += r
    problems.raise_if_any(f"the grid '{grid.name}'")
    first = cells[0]  # cells share the base experiment's resources
    stages: list[Stage] = []
    if select:
        stages.append(Stage("select", tuple(select), single_task(first.resources, timeout_min=30)))
    for stage in stages_of(first, pretrain, evaluate, report):
        if stage.name == "report":
            after = tuple(s.name for s in stages)
        elif select and (stage.name == "pretrain" or not stage.after):
            after = ("select",)
        else:
            after = stage.after
        stages.append(dataclasses.replace(stage, after=after))
    table = GridTableJob(grid.name, str(Path(grid.results_dir).expanduser().resolve()), tuple(cell_overrides(grid)),
                         to_container(grid.table))
    stages.append(Stage("table", (Element(key=element_name("table", grid.name), entry="mcbio.pipelines.grid:grid_table_element",
                                          cfg=table, describe=str),), single_task(first.resources, timeout_min=10),
                        after=tuple(s.name for s in stages)))
    return Plan(name=grid.name, run_dir=grid_out, stages=tuple(stages))

