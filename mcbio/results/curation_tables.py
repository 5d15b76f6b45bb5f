"""Corpus-side tables from the curation statistics JSON: extraction fidelity (Table 8),
training-mix composition, upsampling coefficients.

The statistics file (written by the curation pipeline) is a JSON object with any of:

* ``"fidelity"``: ``{"scores": [overlap in [0, 1], ...]}`` (one per extracted passage) or
  ``{"total": N, "at_least": {"0.99": n, "0.95": n, ...}}`` (passages at or above each level);
  optionally ``{"by_source": {source: <same form>}}``.
* ``"mix"``: ``{source: tokens}`` (tokens actually in the training mix).
* ``"upsampling"``: ``[{"low": %, "high": %, "factor": x, "articles": n, "tokens": t}, ...]``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

from mcbio.results.latex import booktabs_table, fmt

FIDELITY_LEVELS = (0.99, 0.95, 0.90, 0.80, 0.50)


def _from_curation_pipeline(data: dict) -> dict:
    """Map the curation pipeline's own ``curation_stats.json`` (mcbio.data.curation.stats)
    onto the forms above: fidelity shares -> counts, mixed tokens per group, and the number
    of articles per upsampling factor (``upsampling_articles``: {factor: articles})."""
    out = dict(data)
    fid = data.get("fidelity")
    if isinstance(fid, dict) and "passages" in fid:
        total = int(fid["passages"])
        out["fidelity"] = {"total": total, "at_least": {
            str(lvl): round(float(fid[f">={round(100 * lvl)}%"]) * total) for lvl in FIDELITY_LEVELS}}
    mix = data.get("mix")
    if isinstance(mix, dict) and "groups" in mix:
        out["mix"] = {group: float(g["tokens_mixed"]) for group, g in mix["groups"].items()}
    counts: dict[float, int] = {}
    for stage in data.get("stages", []):
        for step in stage.get("steps", []):
            for key, value in step.get("extra", {}).items():
                if key.startswith("articles_factor/"):
                    factor = float(key.split("/", 1)[1])
                    counts[factor] = counts.get(factor, 0) + int(value)
    if counts:
        out["upsampling_articles"] = counts
    return out


def load_curation_stats(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"curation statistics not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be an object")
    return _from_curation_pipeline(data)


def fidelity_shares(block: Mapping, where: str = "fidelity") -> tuple[int, dict[float, float]]:
    """(passages, {level: share of passages with overlap >= level}) from either accepted form."""
    if "scores" in block:
        scores = [float(s) for s in block["scores"]]
        if not scores:
            raise ValueError(f"{where}.scores is empty")
        return len(scores), {lvl: sum(s >= lvl for s in scores) / len(scores) for lvl in FIDELITY_LEVELS}
    if "total" in block and "at_least" in block:
        total = int(block["total"])
        counts = {float(k): int(v) for k, v in block["at_least"].items()}
        missing = [lvl for lvl in FIDELITY_LEVELS if lvl not in counts]
        if missing or total <= 0:
            raise ValueError(f"{where}: 'at_least' needs levels {', '.join(map(str, FIDELITY_LEVELS))} and total > 0")
        return total, {lvl: counts[lvl] / total for lvl in FIDELITY_LEVELS}
    raise ValueError(f"{where}: expected 'scores' or 'total' + 'at_least'")


def fidelity_table(stats: Mapping, caption: str, label: str, decimal_comma: bool = False) -> str:
    if "fidelity" not in stats:
        raise ValueError("curation statistics have no 'fidelity' block")
    block = stats["fidelity"]
    parts = [("All", block)] if ("scores" in block or "total" in block) else []
    parts += sorted(block.get("by_source", {}).items())
    rows = []
    for name, sub in parts:
        n, shares = fidelity_shares(sub, f"fidelity[{name}]")
        rows.append((name, [str(n)] + [fmt(100 * shares[lvl], 1, decimal_comma) for lvl in FIDELITY_LEVELS]))
    header = ["Source", "Passages"] + [f">= {round(100 * lvl)} %" for lvl in FIDELITY_LEVELS]
    return booktabs_table(header, rows, caption, label, bold_best=None)


def mix_table(tokens_by_source: Mapping[str, float], caption: str, label: str, planned: bool,
              decimal_comma: bool = False) -> str:
    total = float(sum(tokens_by_source.values()))
    if total <= 0:
        raise ValueError("training mix: no tokens")
    rows = [(src, [fmt(tok / 1e9, 2, decimal_comma), fmt(100 * tok / total, 1, decimal_comma)])
            for src, tok in sorted(tokens_by_source.items(), key=lambda kv: -kv[1])]
    rows.append(("Total", [fmt(total / 1e9, 2, decimal_comma), fmt(100.0, 1, decimal_comma)]))
    notes = ["Planned mix from the configuration (no curation statistics given)."] if planned else []
    return booktabs_table(["Source", "Tokens (B)", "Share (%)"], rows, caption, label, bold_best=None,
                          midrule_before=(len(rows) - 1,), notes=notes)


def upsampling_table(buckets: Sequence[Mapping], caption: str, label: str, decimal_comma: bool = False) -> str:
    """Quality-ratio buckets -> upsampling factor, with article/token counts when the curation gives them."""
    has_articles = any("articles" in b for b in buckets)
    has_tokens = any("tokens" in b for b in buckets)
    rows = []
    for b in buckets:
        low, high = float(b["low"]), float(b["high"])
        span = f"{low:g} %" if low == high else f"{low:g}--{high:g} %"
        factor = "excluded" if float(b["factor"]) == 0 else fmt(float(b["factor"]), 1, decimal_comma) + r"$\times$"
        cells = [factor]
        if has_articles:
            cells.append(str(b.get("articles", "--")))
        if has_tokens:
            cells.append(fmt(float(b["tokens"]) / 1e6, 1, decimal_comma) if "tokens" in b else "--")
        rows.append((span, cells))
    header = ["Quality ratio", "Upsampling"] + (["Articles"] if has_articles else []) + (["Tokens (M)"] if has_tokens else [])
    return booktabs_table(header, rows, caption, label, bold_best=None)
