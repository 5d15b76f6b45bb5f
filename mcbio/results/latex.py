"""LaTeX (booktabs) tables from result records: mean +- std over seeds, best per row in bold."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Iterable

from mcbio.results.records import ResultRecord, one_fingerprint_per_model
from mcbio.files import write_text_atomic

LATEX_SPECIALS = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}"}


class Latex(str):
    """Text that is already LaTeX: :func:`escape` leaves it alone (headers with math, units)."""


def escape(text: str) -> str:
    if isinstance(text, Latex):
        return str(text)
    return "".join(LATEX_SPECIALS.get(c, c) for c in text)


def fmt(value: float, decimals: int, decimal_comma: bool) -> str:
    text = f"{value:.{decimals}f}"
    return text.replace(".", "{,}") if decimal_comma else text


def aggregate(records: Iterable[ResultRecord]) -> dict[tuple[str, str, str], list[float]]:
    """(task, metric, model) -> values over seeds (last record wins per seed)."""
    latest: dict[tuple, ResultRecord] = {}
    for rec in sorted(records, key=lambda r: r.timestamp):
        latest[(rec.task, rec.metric, rec.model, rec.seed)] = rec
    grouped: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for (task, metric, model, _seed), rec in sorted(latest.items()):
        grouped[(task, metric, model)].append(rec.value)
    return grouped


DEGENERATE_NOTE = (r"$^\dagger$ at least one seed is degenerate (dev score never above 0, or a single "
                   r"predicted class on test).")


def degenerate_cells(records: Iterable[ResultRecord]) -> set[tuple[str, str]]:
    """(task, model) where the latest record of some seed carries ``extra["degenerate"]``."""
    latest: dict[tuple, ResultRecord] = {}
    for rec in sorted(records, key=lambda r: r.timestamp):
        latest[(rec.task, rec.metric, rec.model, rec.seed)] = rec
    return {(rec.task, rec.model) for rec in latest.values() if rec.extra.get("degenerate")}


UNFINGERPRINTED_MARK = r"$^\circ$"
UNFINGERPRINTED_NOTE = (UNFINGERPRINTED_MARK + r" recorded before model fingerprints: the weights behind these "
                        r"scores are not identified.")


def results_table(records: Iterable[ResultRecord], caption: str, label: str, scale: float = 100.0,
                  decimals: int = 1, decimal_comma: bool = False) -> str:
    """Rows = (task, metric), columns = models; cells = mean (± std when several seeds).

    A cell whose (model, task) has a degenerate seed (``extra["degenerate"]``) gets a dagger
    and the table a footnote line; a model whose records carry no fingerprint gets a circle
    and a footnote. Records of two fingerprints under one model name are refused
    (:func:`~mcbio.results.records.one_fingerprint_per_model`).
    """
    records = one_fingerprint_per_model(records)
    grouped = aggregate(records)
    flagged = degenerate_cells(records)
    unidentified = {r.model for r in records if r.model_fingerprint is None}
    models = sorted({m for (_, _, m) in grouped})
    rows = sorted({(t, met) for (t, met, _) in grouped})
    header = [escape(m) + (UNFINGERPRINTED_MARK if m in unidentified else "") for m in models]
    lines = [
        r"\begin{table}[t]", r"\centering", rf"\caption{{{escape(caption)}}}", rf"\label{{{label}}}",
        r"\begin{tabular}{l" + "c" * len(models) + "}", r"\toprule",
        "Task (metric) & " + " & ".join(header) + r" \\", r"\midrule",
    ]
    for task, metric in rows:
        means = {m: statistics.fmean(grouped[(task, metric, m)]) for m in models if (task, metric, m) in grouped}
        best = max(means.values()) if means else None
        cells = []
        for m in models:
            vals = grouped.get((task, metric, m))
            if not vals:
                cells.append("--")
                continue
            cell = fmt(scale * means[m], decimals, decimal_comma)
            if len(vals) > 1:
                cell += r" {\scriptsize $\pm$ " + fmt(scale * statistics.stdev(vals), decimals, decimal_comma) + "}"
            if len(means) > 1 and means[m] == best:
                cell = r"\textbf{" + cell + "}"
            if (task, m) in flagged:
                cell += r"$^\dagger$"
            cells.append(cell)
        lines.append(f"{escape(task)} ({escape(metric)}) & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if flagged:
        lines.append(r"\par\smallskip{\footnotesize " + DEGENERATE_NOTE + "}")
    if unidentified:
        lines.append(r"\par\smallskip{\footnotesize " + UNFINGERPRINTED_NOTE + "}")
    lines += [r"\end{table}", ""]
    return "\n".join(lines)


def write_table(text: str, path: str | Path) -> Path:
    return write_text_atomic(path, text)





def _cell_value(cell) -> float | None:
    if isinstance(cell, tuple):
        return cell[0]
    if isinstance(cell, (int, float)) and not isinstance(cell, bool):
        return float(cell)
    return None


def booktabs_table(
    header: list[str],
    rows: list[tuple[str, list]],
    caption: str,
    label: str,
    decimals: int = 1,
    decimal_comma: bool = False,
    bold_best: str | None = "max",
    best_columns: list[int] | None = None,
    midrule_before: tuple[int, ...] = (),
    notes: list[str] | tuple[str, ...] = (),
    column_align: str | None = None,
) -> str:
    """A booktabs table; ``header[0]`` names the row labels, ``header[1:]`` the data columns.

    A cell is a number, a ``(mean, std)`` pair, a pre-formatted LaTeX string, or None
    ("--"). With ``bold_best`` = ``max``/``min``, the best numeric cell(s) of each row among
    ``best_columns`` (default: all) are bold; ties are all bold. ``notes`` go under the
    table (already LaTeX, e.g. the t-test line). ``midrule_before`` lists row indices
    preceded by a rule (e.g. the Average row).
    """
    ncols = len(header) - 1
    for label_text, cells in rows:
        if len(cells) != ncols:
            raise ValueError(f"table '{label}': row '{label_text}' has {len(cells)} cells, header has {ncols}")
    align = column_align or ("l" + "r" * ncols)
    lines = [
        r"\begin{table}[t]", r"\centering", rf"\caption{{{escape(caption)}}}", rf"\label{{{label}}}",
        rf"\begin{{tabular}}{{{align}}}", r"\toprule",
        " & ".join(escape(h) for h in header) + r" \\", r"\midrule",
    ]
    considered = set(range(ncols) if best_columns is None else best_columns)
    for i, (row_label, cells) in enumerate(rows):
        if i in midrule_before and i > 0:
            lines.append(r"\midrule")
        numeric = {j: _cell_value(c) for j, c in enumerate(cells) if j in considered and _cell_value(c) is not None}
        best = None
        if bold_best and len(numeric) > 1:
            best = max(numeric.values()) if bold_best == "max" else min(numeric.values())
            best = round(best, decimals)
        texts = []
        for j, cell in enumerate(cells):
            if cell is None:
                text = "--"
            elif isinstance(cell, str):
                text = cell
            elif isinstance(cell, tuple):
                text = fmt(cell[0], decimals, decimal_comma) + r" {\scriptsize $\pm$ " + fmt(cell[1], decimals, decimal_comma) + "}"
            else:
                text = fmt(float(cell), decimals, decimal_comma)
            if best is not None and j in numeric and round(numeric[j], decimals) == best:
                text = r"\textbf{" + text + "}"
            texts.append(text)
        lines.append(" & ".join([escape(row_label)] + texts) + r" \\")
    lines.append(r"\bottomrule")
    lines.append(r"\end{tabular}")
    for note in notes:
        lines.append(r"\par\smallskip{\footnotesize " + note + "}")
    lines += [r"\end{table}", ""]
    return "\n".join(lines)


def latex_document(tables: list[str]) -> str:
    """A standalone article wrapping tables: what the pdflatex test compiles."""
    body = "\n\\clearpage\n".join(tables)
    return "\n".join([
        r"\documentclass{article}", r"\usepackage[T1]{fontenc}", r"\usepackage[utf8]{inputenc}",
        r"\usepackage{booktabs}", r"\begin{document}", body, r"\end{document}", "",
    ])
