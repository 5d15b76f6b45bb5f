"""The report: every table under ``<results_dir>/tables`` and figure under ``figures``, from the store.

Each view is produced when its inputs exist (records for a grid, run records for the
carbon table, a statistics file for the corpus tables...) and listed as skipped with the
reason otherwise, so one command always regenerates everything that can be.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Sequence

from mcbio.config.grid import GridTableConfig
from mcbio.config.loader import REPO_ROOT
from mcbio.config.report import ReportRunConfig
from mcbio.results.curation_tables import fidelity_table, load_curation_stats, mix_table, upsampling_table
from mcbio.results.figures import gain_figure, layer_change_figure
from mcbio.results.latex import latex_document, write_table
from mcbio.results.records import ResultRecord, ResultStore
from mcbio.results.tables import ablation_table, carbon_table, clm_mlm_table, main_table, mean_scores, seed_values

log = logging.getLogger(__name__)


def repo_path(path: str | Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


def grid_table(records: Iterable[ResultRecord], grid: str, cells: Sequence[str], cfg: GridTableConfig,
               label: str | None = None) -> str:
    return ablation_table(records, grid, cells, cfg.caption, label or f"tab:{grid}", cfg.primary_only, cfg.scale,
                          cfg.decimals, cfg.decimal_comma)


def _grid_cells(records: Iterable[ResultRecord], grid: str) -> list[str]:
    """Cells in the order they were first recorded (the grid file's order when run in one array)."""
    seen: dict[str, float] = {}
    for r in records:
        cell = r.extra.get("cell") or r.model.removeprefix(f"{grid}.")
        seen[cell] = min(seen.get(cell, r.timestamp), r.timestamp)
    return sorted(seen, key=lambda c: (c != "none", c != "baseline", seen[c]))


def _texts_for_cka(cfg: ReportRunConfig) -> list[str]:
    lc = cfg.layer_change
    if lc.texts:
        lines = [l.strip() for l in repo_path(lc.texts).read_text(encoding="utf-8").splitlines() if l.strip()]
    else:
        from mcbio.data.corpus import iter_documents

        lines = [d.text for d in iter_documents(None, lc.max_texts)]
    return lines[: lc.max_texts]


def layer_change(cfg: ReportRunConfig, stem: Path) -> list[Path]:
    from mcbio.results.layers import layer_cka, layer_weight_change

    lc = cfg.layer_change
    if not lc.start:
        raise ValueError("layer_change.start is not set")
    texts = _texts_for_cka(cfg)
    change: dict[str, list[float]] = {}
    cka: dict[str, list[float]] = {}
    for run, folders in lc.runs.items():
        for phase, folder in enumerate(folders, start=1):
            key = f"{run} phase {phase}"
            change[key] = layer_weight_change(repo_path(lc.start), repo_path(folder))
            cka[key] = layer_cka(repo_path(lc.start), repo_path(folder), texts, lc.max_length)
    return layer_change_figure(change, cka, stem)


def generate_report(cfg: ReportRunConfig) -> dict:
    store = ResultStore(repo_path(cfg.results_dir))
    tables, skipped, figures = {}, {}, []
    records = [r for e in (cfg.experiments or [None]) for r in store.records(e)]
    reference = store.reference_records()
    opts = dict(primary_only=cfg.primary_only, scale=cfg.scale, decimals=cfg.decimals, decimal_comma=cfg.decimal_comma)

    def emit(name: str, build) -> None:
        try:
            tables[name] = build()
        except (ValueError, FileNotFoundError, NotImplementedError, KeyError) as err:
            skipped[name] = str(err).strip("'\"")
            log.warning("report: %s skipped: %s", name, skipped[name])

    for table_name, grid in cfg.ablation_grids.items():
        grid_records = store.records(grid)

        def build(grid=grid, grid_records=grid_records, table_name=table_name):
            if not grid_records:
                raise ValueError(f"no records for grid '{grid}' in {store.records_dir}")
            return grid_table(grid_records, grid, _grid_cells(grid_records, grid),
                              GridTableConfig(caption=f"Ablation ({grid}): fine-tuning results per cell", primary_only=cfg.primary_only,
                                              scale=cfg.scale, decimals=cfg.decimals, decimal_comma=cfg.decimal_comma),
                              label=f"tab:{table_name}")
        emit(table_name, build)

    emit("table3_main", lambda: main_table(records, reference, cfg.main.models, cfg.main.tasks,
                                           "Main comparison (test set, mean over seeds; published values from results/reference)",
                                           "tab:main", cfg.main.show_reference,
                                           reference_names=cfg.main.reference_names, **opts))
    if cfg.clm_vs_mlm:
        emit("table4_clm_vs_mlm", lambda: clm_mlm_table(
            records, [(p.label, p.a, p.b) for p in cfg.clm_vs_mlm],
            "CLM detour vs MLM control (same data and budget)", "tab:clm_vs_mlm", cfg.confidence, **opts))
    else:
        skipped["table4_clm_vs_mlm"] = "no 'clm_vs_mlm' pairs configured"

    def carbon():
        runs = store.runs()
        if not runs:
            raise ValueError(f"no run records in {store.runs_dir}")
        return carbon_table(runs, cfg.carbon.tdp_w, cfg.carbon.pue, cfg.carbon.grid_g_per_kwh,
                            "Carbon footprint of pretraining", "tab:carbon", cfg.decimal_comma)
    emit("table5_carbon", carbon)

    def lengths():
        from mcbio.data.tokenizer import load_tokenizer
        from mcbio.results.lengths import length_stats, lengths_table, task_texts, token_lengths

        lc = cfg.lengths
        if not lc.tasks or not lc.tokenizers:
            raise ValueError("set lengths.tasks and lengths.tokenizers")
        toks = {name: load_tokenizer(repo_path(path)) for name, path in lc.tokenizers.items()}
        stats = []
        for task in lc.tasks:
            texts = task_texts(task, lc.split, cfg.paths.shared_data)
            stats += [length_stats(token_lengths(texts, tok), task, name, lc.threshold) for name, tok in toks.items()]
        return lengths_table(stats, f"Length of {lc.split}-set examples in tokens", "tab:lengths", cfg.decimal_comma)
    emit("table6_lengths", lengths)

    stats = None
    if cfg.curation_stats:
        try:
            stats = load_curation_stats(repo_path(cfg.curation_stats))
        except (ValueError, FileNotFoundError) as err:
            skipped["curation_stats"] = str(err)
    emit("table8_fidelity", lambda: fidelity_table(stats or {}, "Extraction fidelity: share of passages whose "
                                                   "normalised characters overlap their source", "tab:fidelity", cfg.decimal_comma))
    mix_tokens = (stats or {}).get("mix") or {k: v * cfg.mix.total_tokens for k, v in cfg.mix.shares.items()}
    emit("training_mix", lambda: mix_table(mix_tokens, "Training mix composition", "tab:mix", planned=not (stats or {}).get("mix"),
                                           decimal_comma=cfg.decimal_comma))
    articles = (stats or {}).get("upsampling_articles", {})
    buckets = (stats or {}).get("upsampling") or [
        dict(low=b.low, high=b.high, factor=b.factor, **({"articles": articles.get(float(b.factor), 0)} if articles else {}))
        for b in cfg.upsampling
    ]
    emit("upsampling", lambda: upsampling_table(buckets, "Quality-ratio upsampling coefficients", "tab:upsampling",
                                                cfg.decimal_comma))

    for name, text in tables.items():
        write_table(text, store.tables_dir / f"{name}.tex")
    if tables:
        write_table(latex_document(list(tables.values())), store.tables_dir / "all_tables.tex")

    if cfg.gain.a and cfg.gain.b:
        means = mean_scores(seed_values(records, cfg.primary_only))
        try:
            a, b = means[cfg.gain.a], means[cfg.gain.b]
            gains = {t: cfg.scale * (a[t] - b[t]) for t in sorted(set(a) & set(b))}
            figures += gain_figure(gains, cfg.gain.a, cfg.gain.b, store.figures_dir / "per_task_gain")
        except (KeyError, ValueError) as err:
            skipped["per_task_gain"] = f"model {err} has no records" if isinstance(err, KeyError) else str(err)
    else:
        skipped["per_task_gain"] = "no 'gain.a' / 'gain.b' configured"
    if cfg.layer_change.enabled:
        try:
            figures += layer_change(cfg, store.figures_dir / "layer_change")
        except (ValueError, FileNotFoundError) as err:
            skipped["layer_change"] = str(err)

    _log_to_wandb(cfg, store, records, tables)
    return {"tables": sorted(str(store.tables_dir / f"{n}.tex") for n in tables),
            "figures": [str(f) for f in figures], "skipped": skipped}


def _log_to_wandb(cfg: ReportRunConfig, store: ResultStore, records: list[ResultRecord], tables: dict) -> None:
    """The scores behind the tables as a W&B table, and the .tex files, in the report's run."""
    from mcbio.tracking import wandb_run

    out_dir = repo_path(cfg.out_dir) if cfg.out_dir else store.root
    with wandb_run(cfg, out_dir, "report") as wb:
        if wb is None:
            return
        import wandb

        rows = [[m, t, sum(v) / len(v), len(v)] for m, tv in seed_values(records, cfg.primary_only).items() for t, v in tv.items()]
        wb.log({"scores": wandb.Table(columns=["model", "task", "mean", "n_seeds"], data=rows)})
        wb.log({f"tables/{name}": wandb.Html(f"<pre>{text}</pre>") for name, text in tables.items()})
