"""Ablation grids as job arrays: build typed cells, skip finished ones, submit the rest, tabulate.

A cell is finished when its run folder holds ``cell_done.json`` with the cell's current
config hash: that file is written last, after the cell's records reached the results
store, so a killed or failed cell has none and is submitted again on the next launch,
while a cell whose config changed gets a new hash and reruns too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import os
import random
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from mcbio.files import write_json_atomic, write_jsonl_atomic
from mcbio.jsonl import iter_jsonl
from mcbio.config.grid import GridCellConfig, GridRunConfig
from mcbio.config.loader import REPO_ROOT, ConfigError, config_hash, load_config, to_yaml
from mcbio.results.records import ResultStore, RunRecord, git_commit, read_records

log = logging.getLogger(__name__)

DONE_MARKER = "cell_done.json"
CELL_NAME = re.compile(r"^[A-Za-z0-9_.,=+-]+$")


def repo_path(path: str | Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


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


def build_cells(grid: GridRunConfig, grid_out: Path) -> list[GridCellConfig]:
    """Every cell as a validated config; a bad override raises ConfigError naming the cell."""
    base = repo_path(grid.base_config)
    results_dir = repo_path(grid.results_dir)
    cfgs = []
    for name, overrides in cell_overrides(grid).items():
        dotlist = [f"cluster={grid.cluster}", f"wait={str(grid.wait).lower()}"]
        if grid.cell_preset:
            dotlist.append(f"preset={grid.cell_preset}")
        dotlist += list(grid.common_overrides) + list(overrides)
        dotlist += [f"name={grid.name}.{name}", f"out_dir={grid_out / name}", f"grid_name={grid.name}",
                    f"cell_name={name}", f"results_dir={results_dir}"]
        try:
            cfg = load_config(GridCellConfig, base, dotlist)
        except ConfigError as err:
            raise ConfigError(f"grid '{grid.name}', cell '{name}': {err}") from None
        cfg.tracking.group = grid.tracking.group or grid.name
        cfg.tracking.tags = sorted(set(cfg.tracking.tags) | set(grid.tracking.tags) | {f"grid:{grid.name}", f"cell:{name}"})
        if grid.array_parallelism:
            cfg.resources.array_parallelism = grid.array_parallelism
        cfgs.append(cfg)
    return cfgs


def cell_hash(cfg: GridCellConfig) -> str:
    """The cell's config hash; where its records are stored does not change what it computes."""
    return config_hash(dataclasses.replace(cfg, results_dir=""))


def is_done(cfg: GridCellConfig) -> bool:
    marker = Path(cfg.out_dir) / DONE_MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("config_hash") == cell_hash(cfg)
    except json.JSONDecodeError:
        return False


# --------------------------------------------------------------------------- data selection


def _stable_unit(seed: int, key: str) -> float:
    """A number in [0, 1) fixed by (seed, key): the same passages drop whatever the file order."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


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
        if cfg.random_drop_fraction and _stable_unit(cfg.seed, row_id) < cfg.random_drop_fraction:
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


def apply_selection(cfg: GridCellConfig, out_dir: Path) -> dict[str, int] | None:
    """Write the cell's selected corpus and point ``data.corpus`` at it (no-op when disabled)."""
    if not cfg.selection.enabled:
        return None
    from mcbio.data.corpus import SAMPLE_CORPUS

    source = Path(cfg.selection.source or cfg.data.corpus or SAMPLE_CORPUS)
    if not source.exists():
        raise FileNotFoundError(f"selection.source: {source} does not exist")
    rows, counts = select_passages(cfg.selection, source)
    target = out_dir / "data" / "selected.jsonl"
    write_jsonl_atomic(target, rows)
    cfg.data.corpus = str(target)
    (out_dir / "selection.json").write_text(json.dumps(counts, indent=1), encoding="utf-8")
    log.info("selection %s -> %s: %s", source, target, counts)
    return counts


# --------------------------------------------------------------------------- job body


def run_grid_cell(cfg: GridCellConfig) -> dict:
    """Selection -> pretraining experiment -> records into the store -> done marker."""
    from mcbio.pipelines.pretrain import run_pretraining_experiment

    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_hash = cell_hash(cfg)
    counts = apply_selection(cfg, out_dir)
    start = time.time()
    summary = run_pretraining_experiment(cfg)
    wall_s = time.time() - start
    store = ResultStore(cfg.results_dir)
    tag = {"grid": cfg.grid_name, "cell": cfg.cell_name}
    added = 0
    if (out_dir / "results").exists():
        records = read_records(out_dir / "results")
        for rec in records:
            rec.extra = {**rec.extra, **tag}
            rec.config_hash = run_hash
        added = store.add(records, cfg.grid_name)
    if "pretrain" in cfg.stages:
        gpus = cfg.resources.nodes * cfg.resources.gpus_per_node
        store.add_run(RunRecord(model=cfg.name, config_hash=run_hash, gpu_hours=gpus * wall_s / 3600.0,
                                num_gpus=gpus, wall_s=round(wall_s, 3), gpu_type=os.environ.get("MCBIO_GPU_TYPE", "H100" if gpus else "cpu"),
                                commit=git_commit(), extra=tag), cfg.grid_name)
    result = {**summary, "cell": cfg.cell_name, "config_hash": run_hash, "records_added": added, "selection": counts}
    write_json_atomic(out_dir / DONE_MARKER, result, indent=1)
    return result


# --------------------------------------------------------------------------- launcher


def write_grid_table(grid: GridRunConfig) -> Path | None:
    from mcbio.pipelines.report import grid_table

    store = ResultStore(repo_path(grid.results_dir))
    records = store.records(grid.name)
    if not records:
        return None
    text = grid_table(records, grid.name, list(cell_overrides(grid)), grid.table)
    from mcbio.results.latex import write_table

    return write_table(text, store.tables_dir / f"{grid.name}.tex")


def launch_grid(
    config_file: str | Path,
    argv: Sequence[str] | None = None,
    entry: Callable[[GridCellConfig], Any] = run_grid_cell,
) -> int:
    """Load the grid, submit its unfinished cells as one array, wait, then regenerate its table."""
    from mcbio.cluster.launch import resolve_out_dir, submit_array

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        grid = load_config(GridRunConfig, config_file, argv)
        grid_out = resolve_out_dir(grid)
        cells = build_cells(grid, grid_out)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    pending = [c for c in cells if not is_done(c)]
    for c in cells:
        print(f"[mcbio] {grid.name}/{c.cell_name}: {'pending' if c in pending else 'done (skipped)'}", flush=True)
    if grid.dry_run:
        for c in cells:
            print(f"# ---- cell {c.cell_name}\n{to_yaml(c)}", end="")
        return 0
    grid_out.mkdir(parents=True, exist_ok=True)
    (grid_out / "grid.yaml").write_text(to_yaml(grid), encoding="utf-8")
    (grid_out / "submitted.json").write_text(json.dumps([c.cell_name for c in pending]), encoding="utf-8")
    failed: list[str] = []
    if pending:
        jobs = submit_array(entry, pending, grid_out / "submitit", grid.name)
        print(f"[mcbio] {grid.name}: {len(jobs)} cell(s) submitted as job(s) {', '.join(j.job_id for j in jobs)}", flush=True)
        if not grid.wait:
            return 0
        for cfg, job in zip(pending, jobs):
            try:
                job.result()
            except Exception as err:  # one failed cell must not hide the others
                failed.append(cfg.cell_name)
                lines = [l.strip() for l in str(err).splitlines() if l.strip()]
                cause = next((l for l in reversed(lines) if re.match(r"^\w+(Error|Exception)\b", l)), lines[-1] if lines else repr(err))
                print(f"[mcbio] cell {cfg.cell_name} failed (job {job.job_id}): {cause}; log: {job.paths.stderr}",
                      file=sys.stderr)
    table = write_grid_table(grid)
    if table:
        print(f"[mcbio] table: {table}")
    if failed:
        print(f"[mcbio] {len(failed)} cell(s) failed: {', '.join(failed)}; launch again to rerun only those", file=sys.stderr)
        return 1
    return 0
