"""Per-stage statistics for the report tables: ``<out_dir>/curation_stats.json``.

Schema (one object):
  token_unit      how tokens were counted ("tokens:<tokenizer path>" or "tokens:regex_estimate")
  stages          [{stage, tasks, steps: [{step, in, kept, passthrough, dropped: {reason: n},
                   dropped_total, tokens_in, tokens_kept, tokens_dropped, extra: {metric: n}}]}]
  fidelity        {passages, ">=99%": share, ">=95%": ..., ">=50%": ...}
  rejects         {step: documents it dropped, saved under rejects/<step>/ (LLM answers set aside included)}
  classifier      held-out quality of the distilled labeler (absent when the LLM labels all)
  mix             per-group tokens available / target / mixed and shares
  pack            packed shards: documents, sequences, tokens, padding
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

from mcbio.jsonl import iter_jsonl

CORE = ("in", "kept", "passthrough", "tokens_in", "tokens_kept", "tokens_dropped")


def _total(value) -> float:
    return value.get("total", 0) if isinstance(value, dict) else value


def merge_rank_stats(stats_dir: Path) -> List[dict]:
    """Sum datatrove's per-task stats files (stats/<rank>.json), step by step."""
    merged: List[Dict[str, float]] = []
    names: List[str] = []
    files = sorted(stats_dir.glob("*.json"))
    for path in files:
        steps = json.loads(path.read_text(encoding="utf-8"))
        for i, step in enumerate(steps):
            if i >= len(merged):
                merged.append(defaultdict(float))
                names.append(step.get("name", f"step{i}"))
            for metric, value in (step.get("stats") or {}).items():
                merged[i][metric] += _total(value)
    return [{"name": n, "stats": dict(m)} for n, m in zip(names, merged)], len(files)


def step_table(step: dict) -> dict:
    stats = step["stats"]
    row = {"step": step["name"].split(": ", 1)[-1].strip(), **{k: int(stats.get(k, 0)) for k in CORE}}
    row["dropped"] = {k.split("/", 1)[1]: int(v) for k, v in stats.items() if k.startswith("dropped/")}
    row["dropped_total"] = sum(row["dropped"].values())
    row["extra"] = {k: v for k, v in stats.items() if k not in CORE and not k.startswith("dropped/")}
    return row


def stage_stats(logging_dir: Path, stage: str) -> dict:
    steps, tasks = merge_rank_stats(logging_dir / "stats")
    return {"stage": stage, "tasks": tasks, "steps": [step_table(s) for s in steps]}


def reject_counts(rejects_dir: Path) -> Dict[str, int]:
    """Saved rejects per step: the lines of ``rejects/<step>/*.jsonl[.gz]`` (datatrove's JsonlWriter files)."""
    return {d.name: sum(1 for f in sorted(d.glob("*.jsonl*")) for _ in iter_jsonl(f))
            for d in sorted(Path(rejects_dir).glob("*")) if d.is_dir()}
