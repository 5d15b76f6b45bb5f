"""The paper's published numbers as reference records, generated from its CSV tables.

``../shared/paper/`` (config key ``paper_dir`` of the report, env ``MCBIO_PAPER``) holds
every table of the ModernCamemBERT-bio paper as CSV. :func:`reference_records` turns each
file into :class:`~mcbio.results.records.ResultRecord` s (``seed = -1``, ``config_hash =
commit = "published"``, ``timestamp = 0``), one per (model, task, metric), with
``extra.source`` naming the paper table and ``extra.published`` the number as printed;
:func:`write_reference` writes them to ``results/reference/<csv stem>.jsonl``::

    python -m mcbio.results reference [paper_dir=PATH] [results_dir=results]

F1 scores are stored as fractions (the store's convention; tables scale them by 100);
other quantities keep the CSV's unit (``extra.unit``). The CSVs themselves are never
copied into the repository.

Names: Table 3 models keep the paper's names; the MLM controls of Table 4 are
``ModernCamemBERT-bio-{base,large}-mlm-control`` (its CLM columns are Table 3's
ModernCamemBERT-bio rows, checked equal); tasks use the registry names
(:data:`PAPER_TASK_NAMES`); ablation cells use the grid names ``content_types.<cell>`` /
``quality_signals.<cell>``.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Iterable

from mcbio.results.records import ResultRecord

# The paper's task names (tables 3, 4, 6) -> the task registry's.
PAPER_TASK_NAMES = {
    "DiaMed": "diamed", "FrACCO-30": "fracco_30", "FrACCO-100": "fracco_100", "CANTEMIST": "cantemist",
    "DisTEMIST": "distemist", "MedDialog": "meddialog_fr", "EMEA": "quaero_emea", "Medline": "quaero_medline",
    "EMEA (NER)": "quaero_emea", "Medline (NER)": "quaero_medline", "FrACCO": "fracco_100",
}
# Registry name -> the paper's label, in the paper's order (Table 3).
TASK_LABELS = {"diamed": "DiaMed", "fracco_30": "FrACCO-30", "fracco_100": "FrACCO-100", "cantemist": "CANTEMIST",
               "distemist": "DisTEMIST", "meddialog_fr": "MedDialog", "quaero_emea": "EMEA", "quaero_medline": "Medline",
               "morfitt": "MORFITT"}
TASK_TYPES = {"single_label": "CLS", "multi_label": "Multi", "ner": "NER"}

PAPER_MODELS = ["ModernCamemBERT-bio-base", "ModernCamemBERT-bio-large", "ModernCamemBERT", "CamemBERT-bio",
                "CamemBERT", "DrBERT"]
BASE, LARGE = "ModernCamemBERT-bio-base", "ModernCamemBERT-bio-large"
BASE_CONTROL, LARGE_CONTROL = f"{BASE}-mlm-control", f"{LARGE}-mlm-control"
TABLE4_COLUMNS = {"base_clm_detour": BASE, "base_mlm_control": BASE_CONTROL,
                  "large_clm_detour": LARGE, "large_mlm_control": LARGE_CONTROL}

TABLE1A_TASKS = ["diamed", "fracco_30", "quaero_emea"]
# Table 1b filters -> the cell names of ablations/quality_signals (cells not in that grid keep these names).
QUALITY_CELLS = {"edu>=8 AND cont>=8": "edu_cont_8", "edu>=7 AND cont>=7": "edu_cont_7",
                 "edu>=6 AND cont>=6": "edu_cont_6", "edu>=7 only": "edu", "cont>=7 only": "cont",
                 "term>=7 only": "term", "writ>=7 only": "writ", "no filter (reference)": "none"}
LENGTH_MODEL = "ModernCamemBERT tokenizer"
CORPUS_MODEL = "biomed-fr-v2"


def _source(file: str, item: str) -> str:
    return f"paper {item} ({file})"


def _number(text: str, where: str) -> float:
    try:
        return float(text.strip().lstrip("~+"))
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a number") from None


def _rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    if not path.is_file():
        raise FileNotFoundError(f"paper table not found: {path} (set paper_dir=PATH or MCBIO_PAPER=PATH)")
    out = []
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            if None in row or None in row.values():
                raise ValueError(f"{path}:{reader.line_num}: not as many fields as the header "
                                 f"({', '.join(reader.fieldnames or [])})")
            out.append((reader.line_num, {k: v.strip() for k, v in row.items()}))
    return out


def _rec(model: str, task: str, metric: str, value: float, **extra) -> ResultRecord:
    return ResultRecord(model=model, task=task, seed=-1, metric=metric, value=value, config_hash="published",
                        commit="published", split="test", extra=extra, timestamp=0.0)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _table1a(path: Path) -> list[ResultRecord]:
    src = _source(path.name, "Table 1a, content-type ablation")
    out = []
    for i, (line, row) in enumerate(_rows(path)):
        label = row["removed_type"]
        cell = "none" if label.startswith("none") else "random_removal" if label == "random" else f"no_{label}"
        out.append(_rec(f"content_types.{cell}", "mean:" + ",".join(TABLE1A_TASKS), "f1",
                        _number(row["f1"], f"{path}:{line}") / 100, label=label, published=row["f1"],
                        published_delta=row["delta_pp"], reference_row=label.startswith("none"), row=i,
                        tasks=TABLE1A_TASKS, primary=True, table="1a", source=src,
                        note="ModernCamemBERT-base, MLM 30 %, 10B tokens, no decay, no CLM; corpus balanced across "
                             "the 9 types; 9 seeds; mean F1 over DiaMed, FrACCO-30, EMEA"))
    return out


def _table1b(path: Path) -> list[ResultRecord]:
    src = _source(path.name, "Table 1b, quality-signal filters")
    out = []
    for i, (line, row) in enumerate(_rows(path)):
        label = row["filter"]
        cell = QUALITY_CELLS.get(label, _slug(label))
        out.append(_rec(f"quality_signals.{cell}", "mean:6_tasks", "f1", _number(row["f1"], f"{path}:{line}") / 100,
                        label=label, published=row["f1"], published_delta=row["delta_pp"],
                        reference_row=cell == "none", row=i, tasks=[], primary=True, table="1b", source=src,
                        note="same setting as Table 1a; mean F1 over 6 tasks (not listed in the paper), 9 seeds"))
    return out


def _table3(path: Path) -> list[ResultRecord]:
    src = _source(path.name, "Table 3, main comparison")
    out = []
    for line, row in _rows(path):
        if row["task"] == "Average":
            continue
        task = PAPER_TASK_NAMES[row["task"]]
        for model in (c for c in row if c not in ("task", "type")):
            out.append(_rec(model, task, "f1", _number(row[model], f"{path}:{line}") / 100, published=row[model],
                            task_type=row["type"], primary=True, table="3", source=src,
                            note="mean over 9 seeds (42-50); 8192-token context for long encoders, 512 otherwise"))
    return out


def _table4(path: Path, table3: list[ResultRecord]) -> list[ResultRecord]:
    src = _source(path.name, "Table 4, CLM detour vs MLM control")
    in3 = {(r.model, r.task): r.extra["published"] for r in table3}
    out = []
    for line, row in _rows(path):
        if row["task"] == "Average":
            continue
        task = PAPER_TASK_NAMES[row["task"]]
        for column, model in TABLE4_COLUMNS.items():
            if model in (BASE, LARGE):
                if in3.get((model, task)) is not None and _number(in3[(model, task)], "") != _number(row[column], ""):
                    raise ValueError(f"{path}:{line}: {column} = {row[column]} differs from Table 3's {model} "
                                     f"({in3[(model, task)]}) on {row['task']}")
                if (model, task) in in3:
                    continue  # the CLM columns are Table 3's records
            out.append(_rec(model, task, "f1", _number(row[column], f"{path}:{line}") / 100, published=row[column],
                            primary=True, table="4", source=src,
                            note="same data, budget and data order as the CLM detour; MLM 30 % then 15 %"))
    return out


def _table5(path: Path) -> list[ResultRecord]:
    src = _source(path.name, "Table 5, carbon footprint")
    out = []
    for i, (line, row) in enumerate(_rows(path)):
        common = dict(hardware=row["hardware"], row_source=row["source"], row=i, table="5", source=src)
        for metric, unit in (("duration_h", "h"), ("gpu_hours", "GPU-h"), ("kg_co2eq", "kg CO2eq")):
            out.append(_rec(row["model"], "pretraining", metric, _number(row[metric], f"{path}:{line}"),
                            published=row[metric], unit=unit, **common))
    return out


def _table6(path: Path) -> list[ResultRecord]:
    src = _source(path.name, "Table 6, test-set length statistics")
    out = []
    for i, (line, row) in enumerate(_rows(path)):
        task = PAPER_TASK_NAMES[row["task"]]
        for metric, unit in (("n", "documents"), ("mean", "tokens"), ("median", "tokens"), ("p95", "tokens"),
                             ("max", "tokens"), ("share_over_512", "%")):
            text = row[metric]
            out.append(_rec(LENGTH_MODEL, task, metric, _number(text, f"{path}:{line}"), published=text, unit=unit,
                            approximate=text.startswith("~"), label=row["task"], row=i, table="6", source=src,
                            note="ModernCamemBERT tokens, no special tokens, per document"))
    return out


def _table7(path: Path) -> list[ResultRecord]:
    src = _source(path.name, "Table 7, appendix D, upsampling coefficients")
    out = []
    for i, (line, row) in enumerate(_rows(path)):
        text = row["coefficient"]
        excluded = text == "excluded"
        out.append(_rec(CORPUS_MODEL, "upsampling", f"coefficient[{row['quality_ratio_bucket']}]",
                        0.0 if excluded else _number(text, f"{path}:{line}"), published=text, excluded=excluded,
                        bucket=row["quality_ratio_bucket"], row=i, unit="x", table="7", source=src,
                        note="bucket = share of an article's paragraphs with edu >= 7 AND cont >= 7"))
    return out


def _table8(path: Path) -> list[ResultRecord]:
    src = _source(path.name, "Table 8, appendix E, extraction fidelity")
    out = []
    for i, (line, row) in enumerate(_rows(path)):
        threshold = row["overlap_threshold"]
        level = _number(threshold.lstrip(">=").rstrip("%"), f"{path}:{line}")
        out.append(_rec(CORPUS_MODEL, "extraction_fidelity", f"share_at_least_{level:g}",
                        _number(row["share_of_passages_pct"], f"{path}:{line}") / 100,
                        published=row["share_of_passages_pct"], threshold=threshold, level=level / 100, row=i,
                        passages=300, table="8", source=src,
                        note="character overlap after normalisation, 300 random ISTEX paragraphs"))
    return out


def _drbenchmark(path: Path) -> list[ResultRecord]:
    src = "DoctoBERT-fr-base model card, DrBenchmark table (drbenchmark_doctobert_card.csv)"
    out = []
    for i, (line, row) in enumerate(_rows(path)):
        for column in (c for c in row if c not in ("model", "family")):
            aggregate = column in ("MinMax", "WP")
            out.append(_rec(row["model"], "drbenchmark" if aggregate else f"drbenchmark:{column}",
                            {"MinMax": "min_max", "WP": "win_probability"}.get(column, "f1"),
                            _number(row[column], f"{path}:{line}") / 100, published=row[column],
                            family=row["family"], row=i, primary=not aggregate, table="drbenchmark", source=src,
                            note="DrBenchmark: 7 tasks, 5 seeds, hyperparameters tuned on validation"))
    return out


def reference_records(paper_dir: str | Path) -> dict[str, list[ResultRecord]]:
    """``{file stem: records}`` for every paper CSV present (Table 4 needs Table 3 beside it)."""
    paper_dir = Path(paper_dir)
    if not paper_dir.is_dir():
        raise FileNotFoundError(f"paper folder not found: {paper_dir} (set paper_dir=PATH or MCBIO_PAPER=PATH)")
    builders = {"table1a_content_types": _table1a, "table1b_quality_filters": _table1b, "table3_main": _table3,
                "table5_carbon": _table5, "table6_lengths": _table6, "table7_upsampling": _table7,
                "table8_fidelity": _table8, "drbenchmark_doctobert_card": _drbenchmark}
    out: dict[str, list[ResultRecord]] = {}
    for stem, build in builders.items():
        if (paper_dir / f"{stem}.csv").is_file():
            out[stem] = build(paper_dir / f"{stem}.csv")
    if (paper_dir / "table4_clm_vs_mlm.csv").is_file():
        out["table4_clm_vs_mlm"] = _table4(paper_dir / "table4_clm_vs_mlm.csv", out.get("table3_main", []))
    if not out:
        raise FileNotFoundError(f"{paper_dir}: no paper table (table*.csv)")
    return out


def record_lines(records: Iterable[ResultRecord]) -> str:
    """JSON lines exactly as the store writes them (sorted keys, UTF-8)."""
    return "".join(json.dumps(asdict(r), ensure_ascii=False, sort_keys=True) + "\n" for r in records)


def write_reference(paper_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Write ``<out_dir>/<csv stem>.jsonl`` for every paper table; returns the files written."""
    from mcbio.files import write_text_atomic

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [write_text_atomic(out_dir / f"{stem}.jsonl", record_lines(records))
            for stem, records in reference_records(paper_dir).items()]


def stale_reference(paper_dir: str | Path, out_dir: str | Path) -> list[str]:
    """Files of ``out_dir`` that regenerating from ``paper_dir`` would change (empty = up to date)."""
    out_dir = Path(out_dir)
    stale = []
    for stem, records in reference_records(paper_dir).items():
        path = out_dir / f"{stem}.jsonl"
        if not path.is_file() or path.read_text(encoding="utf-8") != record_lines(records):
            stale.append(str(path))
    return stale
