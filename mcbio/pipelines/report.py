"""The report: every table under ``<results_dir>/tables`` and figure under ``figures``, from the store.

Each view is produced when its inputs exist (records for a grid, run records for the
carbon table, a statistics file for the corpus tables...) and listed as skipped with the
reason otherwise, so one command always regenerates everything that can be.

The paper's Tables 1a, 1b, 3-8 and Figure 2 are built from the reference records
(``results/reference``, generated from the paper's CSVs by ``python -m mcbio.results
reference``); this repository's records add a "this repository" column beside the
published one (:mod:`mcbio.results.paper_tables`).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

from mcbio.config.grid import GridTableConfig
from mcbio.config.curation import MixConfig as CurationMixConfig, UpsamplingConfig
from mcbio.config.report import ReportRunConfig
from mcbio.results.curation_tables import load_curation_stats, mix_table
from mcbio.results.figures import layer_change_figure
from mcbio.results.latex import latex_document, write_table
from mcbio.results.records import ResultRecord, ResultStore, one_fingerprint_per_model
from mcbio.results.tables import ablation_table, seed_values

if TYPE_CHECKING:
    from mcbio.cluster.launcher import LaunchContext
    from mcbio.cluster.plan import Plan

log = logging.getLogger(__name__)


def repo_path(path: str | Path) -> Path:
    p = Path(path).expanduser()
    return p.resolve()


def grid_table(records: Iterable[ResultRecord], grid: str, cells: Sequence[str], cfg: GridTableConfig,
               label: str | None = None) -> str:
    # A cell's records carry their cell; the model name also holds the run's preset (``-smoke``).
    records = [dataclasses.replace(r, model=f"{grid}.{r.extra['cell']}") if r.extra.get("cell") else r
               for r in records]
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


def paper_path(path: str | Path) -> Path:
    """``paper_dir``: relative paths are from the repository (``../shared/paper`` by default)."""
    repo_root = Path(__file__).resolve().parents[2]
    p = Path(path).expanduser()
    return p if p.is_absolute() else (repo_root / p).resolve()


def fidelity_examples(paper_dir: Path) -> list[tuple[str, float]]:
    """The appendix-E examples (``fidelity_examples.json``) scored by the extraction-fidelity measure."""
    import json

    from mcbio.data.curation.fidelity import character_overlap

    path = paper_dir / "fidelity_examples.json"
    if not path.is_file():
        raise FileNotFoundError(f"appendix-E examples not found: {path} (set paper_dir=PATH or MCBIO_PAPER=PATH)")
    return [(str(e["name"]), character_overlap(e["extracted"], e["source"]))
            for e in json.loads(path.read_text(encoding="utf-8"))]


def computed_lengths(cfg: ReportRunConfig, skipped: dict[str, str]) -> list:
    """Table 6's "this repository" rows: every configured task whose test data is at hand, per tokenizer."""
    from mcbio.data.tokenizer import load_tokenizer
    from mcbio.results.lengths import length_stats, task_documents, token_lengths

    lc = cfg.lengths
    if not lc.tokenizers:
        skipped["table6_lengths (this repository)"] = "no lengths.tokenizers configured (label -> tokenizer folder)"
        return []
    toks = {name: load_tokenizer(repo_path(path)) for name, path in lc.tokenizers.items()}
    stats, missing = [], []
    for task in lc.tasks:
        try:
            texts = task_documents(task, lc.split, cfg.paths.shared_data)
        except (FileNotFoundError, KeyError, ValueError) as err:
            missing.append(f"{task} ({str(err).splitlines()[0][:160]})")
            continue
        stats += [length_stats(token_lengths(texts, tok), task, name, lc.threshold) for name, tok in toks.items()]
    if missing:
        skipped["table6_lengths (this repository)"] = "no data for: " + "; ".join(missing)
    return stats


def _repo_fidelity(stats: dict | None):
    from mcbio.results.curation_tables import fidelity_shares

    block = (stats or {}).get("fidelity")
    if not block or not ("scores" in block or "total" in block):
        return None
    return fidelity_shares(block)


def curation_llm_steps(store: ResultStore) -> list[tuple[str, dict]]:
    """(``<curation>/<step>``, the step's LLM summary) of every curation statistics file in the store
    (steps that ran on an LLM engine only)."""
    from mcbio.files import read_json_object
    from mcbio.llm.accounting import engine_steps

    folder = store.root / "curation"
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        for step, summary in sorted(engine_steps((read_json_object(path) or {}).get("llm")).items()):
            out.append((f"{path.stem} {step}", summary))
    return out


def unknown_tasks(by_file: Mapping[Path, Iterable[ResultRecord]], known: Iterable[str]) -> dict[str, list[Path]]:
    """Task names of the records that ``known`` lacks -> the files holding them."""
    known = set(known)
    found: dict[str, list[Path]] = {}
    for file, records in by_file.items():
        for task in sorted({r.task for r in records} - known):
            found.setdefault(task, []).append(file)
    return found


def warn_unknown_tasks(by_file: Mapping[Path, Iterable[ResultRecord]]) -> dict[str, list[Path]]:
    """One warning per task of this repository's records that the task registry does not know.

    Such records are tabled like any other; the warning is what tells a typo or a stale task
    name apart. Only ``records/`` is checked: the reference records name the paper's tables'
    own rows (``mean:6_tasks``, ``pretraining``...), not registry tasks.
    """
    from mcbio.evaluate.tasks import BUILTIN_TASKS

    found = unknown_tasks(by_file, BUILTIN_TASKS)
    for task, files in sorted(found.items()):
        log.warning("report: records of task '%s' in %s: not a registered task (known: %s; a task declared in "
                    "custom_tasks or task_files is not known here either); shown as recorded", task,
                    ", ".join(map(str, files)), ", ".join(sorted(BUILTIN_TASKS)))
    return found


def generate_report(cfg: ReportRunConfig) -> dict:
    """Every table (``tables/*.tex`` and ``all_tables.tex``) and figure, from the store's records alone.

    The paper's tables come from the reference records (``results/reference``); this
    repository's records, runs and curation statistics add their columns where they exist.
    """
    from mcbio.results.figures import gain_comparison_figure
    from mcbio.results.paper import TASK_LABELS
    from mcbio.results.study_tables import study_figure, study_overlap_of, study_table_of
    from mcbio.results.paper_tables import (
        ablation_paper_table,
        carbon_paper_table,
        clm_mlm_paper_table,
        drbenchmark_table,
        fidelity_paper_table,
        gain_series,
        lengths_paper_table,
        main_paper_table,
        upsampling_paper_table,
    )

    store = ResultStore(repo_path(cfg.results_dir))
    tables, skipped, figures = {}, {}, []
    by_file = store.records_by_file()
    warn_unknown_tasks(by_file)
    # Two weights under one model name would be averaged together: refuse unless told which to keep.
    stored = [r for recs in by_file.values() for r in recs]
    unknown = sorted(set(cfg.keep_fingerprints) - {r.model for r in stored})
    if unknown:
        raise ValueError(f"keep_fingerprints: no records of {', '.join(unknown)} in {store.records_dir}")
    all_records = one_fingerprint_per_model(stored, cfg.keep_fingerprints)
    records = one_fingerprint_per_model([r for e in (cfg.experiments or [None]) for r in store.records(e)],
                                        cfg.keep_fingerprints)
    reference = store.reference_records()
    dc = cfg.decimal_comma
    paper_dir = paper_path(cfg.paper_dir)

    def emit(name: str, build) -> None:
        try:
            tables[name] = build()
        except (ValueError, FileNotFoundError, NotImplementedError, KeyError) as err:
            skipped[name] = str(err).strip("'\"")
            log.warning("report: %s skipped: %s", name, skipped[name])

    # Table 1: the paper's ablations (and this repository's grid cells of the same names).
    emit("table1a_content_types", lambda: ablation_paper_table(
        reference, all_records, "1a", "Removed type",
        "Content-type ablation: mean F1 over DiaMed, FrACCO-30 and EMEA with one type removed (delta vs the "
        "balanced full corpus)", "tab:content_types", dc))
    emit("table1b_quality_filters", lambda: ablation_paper_table(
        reference, all_records, "1b", "Filter",
        "Quality-signal filters: mean F1 over 6 tasks (delta vs no filter)", "tab:quality_filters", dc))
    for table_name, grid in cfg.ablation_grids.items():
        grid_records = one_fingerprint_per_model(store.records(grid), cfg.keep_fingerprints)

        def build(grid=grid, grid_records=grid_records, table_name=table_name):
            if not grid_records:
                raise ValueError(f"no records for grid '{grid}' in {store.records_dir}")
            return grid_table(grid_records, grid, _grid_cells(grid_records, grid),
                              GridTableConfig(caption=f"Ablation ({grid}, this repository): fine-tuning results per cell",
                                              primary_only=cfg.primary_only, scale=cfg.scale, decimals=cfg.decimals,
                                              decimal_comma=dc),
                              label=f"tab:{table_name}")
        emit(table_name, build)

    # Every model of the store, whatever its name: a run's records show up with no other step.
    def repository_table() -> str:
        from mcbio.results.latex import results_table

        if not records:
            raise ValueError(f"no records in {store.records_dir}")
        return results_table(records, caption="This repository: fine-tuning results of every recorded model "
                             "(test sets, mean over seeds)", label="tab:repository", decimal_comma=dc)

    emit("repository_results", repository_table)
    emit("table3_main", lambda: main_paper_table(
        reference, records, cfg.main.tasks, cfg.main.paper_models, cfg.main.repo_models,
        "Main comparison: F1 on the 8 French biomedical tasks (test sets)", "tab:main", dc, cfg.scale))
    emit("table4_clm_vs_mlm", lambda: clm_mlm_paper_table(
        reference, records, [(p.label, p.a, p.b, p.paper_a, p.paper_b) for p in cfg.clm_vs_mlm], cfg.main.tasks,
        "CLM detour vs MLM control (same data, budget and data order)", "tab:clm_vs_mlm", cfg.confidence, dc, cfg.scale))
    for spec in cfg.studies:
        emit(f"table4_{spec.experiment}", lambda spec=spec: study_table_of(spec, store, cfg.confidence, dc,
                                                                         cfg.keep_fingerprints))
        emit(f"overlap_{spec.experiment}", lambda spec=spec: study_overlap_of(spec, store, dc))
    emit("table5_carbon", lambda: carbon_paper_table(
        reference, store.runs(), cfg.carbon.tdp_w, cfg.carbon.pue, cfg.carbon.grid_g_per_kwh,
        "Carbon footprint of pretraining (and of this repository's curation LLM steps)", "tab:carbon", dc,
        curation_llm_steps(store)))
    emit("table6_lengths", lambda: lengths_paper_table(
        reference, computed_lengths(cfg, skipped), f"Length of {cfg.lengths.split}-set documents in tokens",
        "tab:lengths", dc))

    stats = None
    if cfg.curation_stats:
        try:
            stats = load_curation_stats(repo_path(cfg.curation_stats))
        except (ValueError, FileNotFoundError) as err:
            skipped["curation_stats"] = str(err)
    articles = (stats or {}).get("upsampling_articles", {})
    # The curation experiment's own coefficients (one home: mcbio.config.curation).
    buckets = (stats or {}).get("upsampling") or [
        {**b, **({"articles": articles.get(float(b["factor"]), 0)} if articles else {})}
        for b in UpsamplingConfig().buckets()
    ]
    emit("table7_upsampling", lambda: upsampling_paper_table(
        reference, buckets, "Quality-ratio upsampling coefficients (appendix D)", "tab:upsampling", dc))
    examples: list[tuple[str, float]] = []
    try:
        examples = fidelity_examples(paper_dir)
    except (FileNotFoundError, ValueError, KeyError) as err:
        skipped["table8_fidelity (appendix-E examples)"] = str(err)
    from mcbio.files import read_json_object
    from mcbio.pipelines.fidelity import fidelity_path

    measured = read_json_object(fidelity_path(store.root))
    emit("table8_fidelity", lambda: fidelity_paper_table(
        reference, _repo_fidelity(stats), examples, measured,
        "Extraction fidelity: share of passages whose normalised characters overlap their source (appendix E)",
        "tab:fidelity", dc))
    planned = CurationMixConfig()
    mix_tokens = (stats or {}).get("mix") or {k: v * planned.total_tokens for k, v in planned.shares.items()}
    emit("training_mix", lambda: mix_table(mix_tokens, "Training mix composition", "tab:mix",
                                           planned=not (stats or {}).get("mix"), decimal_comma=dc))
    emit("drbenchmark_doctobert", lambda: drbenchmark_table(
        reference, "DrBenchmark results reported by the DoctoBERT-fr-base model card", "tab:drbenchmark", dc))

    for name, text in tables.items():
        write_table(text, store.tables_dir / f"{name}.tex")
    if tables:
        write_table(latex_document(list(tables.values())), store.tables_dir / "all_tables.tex")

    g = cfg.gain
    try:
        series = gain_series(reference, records, (g.a, g.b, g.paper_a, g.paper_b), cfg.main.tasks, cfg.scale)
        figures += gain_comparison_figure(series, TASK_LABELS, f"{g.label}: CLM detour minus MLM control, per task",
                                          store.figures_dir / "figure2_per_task_gain")
    except (KeyError, ValueError) as err:
        skipped["figure2_per_task_gain"] = str(err)
    for spec in cfg.studies:
        try:
            figures += study_figure(spec, store, store.figures_dir, cfg.keep_fingerprints)
        except (KeyError, ValueError) as err:
            skipped[f"gain_{spec.experiment}"] = str(err)
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
    from mcbio.config.loader import to_container

    with wandb_run(cfg.tracking, cfg.name, out_dir, "report", to_container(cfg)) as wb:
        if wb is None:
            return
        import wandb

        rows = [[m, t, sum(v) / len(v), len(v)] for m, tv in seed_values(records, cfg.primary_only).items() for t, v in tv.items()]
        wb.log({"scores": wandb.Table(columns=["model", "task", "mean", "n_seeds"], data=rows)})
        wb.log({f"tables/{name}": wandb.Html(f"<pre>{text}</pre>") for name, text in tables.items()})


def plan_report(cfg: ReportRunConfig, ctx: "LaunchContext") -> "Plan":
    """One element: every table and figure from the store (a CPU job; locally, a subprocess)."""
    import dataclasses

    from mcbio.cluster.launcher import element_name, run_dir_of, run_name
    from mcbio.cluster.plan import Element, Plan, Stage, single_task

    from mcbio.config.checks import Problems, check_llm, check_path
    from mcbio.pipelines.fidelity import AppendixFidelityJob, describe, fidelity_done, fidelity_path

    run_dir = run_dir_of(cfg)
    element_cfg = dataclasses.replace(cfg, results_dir=str(repo_path(cfg.results_dir)))
    stages = []
    if cfg.fidelity.llm is not None:
        problems = Problems()
        check_llm(problems, "fidelity.llm", cfg.fidelity.llm)
        examples = check_path(problems, "paper_dir", str(paper_path(cfg.paper_dir) / "fidelity_examples.json"), "file")
        problems.raise_if_any(f"the report '{cfg.name}'")
        job = AppendixFidelityJob(cfg.fidelity.llm, str(examples), str(fidelity_path(element_cfg.results_dir)),
                                  cfg.fidelity.prompt, cfg.fidelity.max_passage_words, str(run_dir / "llm_logs"))
        stages.append(Stage("fidelity", (Element(
            key=element_name("fidelity", "appendix_e"), entry="mcbio.pipelines.fidelity:measure_appendix_fidelity",
            cfg=job, done=lambda: fidelity_done(job), describe=describe),),
            single_task(cfg.resources, timeout_min=60)))
    stages.append(Stage("report", (Element(key=element_name("report", cfg.name),
                                           entry="mcbio.pipelines.report:generate_report", cfg=element_cfg,
                                           describe=lambda r: f"{len(r.get('tables', {}))} table(s)"),),
                        single_task(cfg.resources, timeout_min=30), after=tuple(s.name for s in stages)))
    return Plan(name=run_name(cfg), run_dir=run_dir, stages=tuple(stages))
