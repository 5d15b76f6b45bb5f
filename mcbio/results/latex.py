"""LaTeX (booktabs) tables from result records: mean +- std over seeds, best per row in bold."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Iterable

from mcbio.results.records import ResultRecord

LATEX_SPECIALS = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}"}


def escape(text: str) -> str:
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


def results_table(records: Iterable[ResultRecord], caption: str, label: str, scale: float = 100.0,
                  decimals: int = 1, decimal_comma: bool = False) -> str:
    """Rows = (task, metric), columns = models; cells = mean (± std when several seeds)."""
    grouped = aggregate(records)
    models = sorted({m for (_, _, m) in grouped})
    rows = sorted({(t, met) for (t, met, _) in grouped})
    lines = [
        r"\begin{table}[t]", r"\centering", rf"\caption{{{escape(caption)}}}", rf"\label{{{label}}}",
        r"\begin{tabular}{l" + "c" * len(models) + "}", r"\toprule",
        "Task (metric) & " + " & ".join(escape(m) for m in models) + r" \\", r"\midrule",
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
            cells.append(cell)
        lines.append(f"{escape(task)} ({escape(metric)}) & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def write_table(text: str, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
