"""Mix by token share (articles 70 %, ontology textbooks 20 %, EMEA 6 %, E3C 4 %), seeded.

Each group's pool is its documents weighted by their upsampling factor; every document
gets ``factor x scale`` copies in expectation (floor, plus one with the fractional
probability), with ``scale = target tokens / pool tokens`` of its group.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class PoolDoc:
    tokens: int
    factor: float = 1.0


def plan_mix(
    pools: Dict[str, Sequence[PoolDoc]],
    shares: Dict[str, float],
    total_tokens: Optional[int],
    seed: int,
    renormalize_missing: bool = True,
) -> Tuple[List[Tuple[str, int]], dict]:
    """Return the mixed sequence of ``(group, document index)`` (shuffled) and a per-group report."""
    available = {g: float(sum(d.tokens * d.factor for d in pools.get(g, ()))) for g in shares}
    wanted = {g: s for g, s in shares.items() if s > 0}
    missing = [g for g in wanted if available.get(g, 0) <= 0]
    if missing:
        if not renormalize_missing:
            raise ValueError(f"mix: no documents for group(s) {', '.join(missing)} "
                             "(set mix.renormalize_missing=true to share their tokens among the others)")
        log.warning("mix: no documents for %s; renormalising the other shares", ", ".join(missing))
        wanted = {g: s for g, s in wanted.items() if g not in missing}
    if not wanted:
        raise ValueError("mix: none of the groups in mix.shares has documents")
    norm = sum(wanted.values())
    wanted = {g: s / norm for g, s in wanted.items()}
    total = float(total_tokens) if total_tokens else min(available[g] / s for g, s in wanted.items())

    plan: List[Tuple[str, int]] = []
    report: dict = {"total_tokens_target": int(total), "seed": seed, "groups": {}}
    for gi, group in enumerate(sorted(wanted)):
        rng = np.random.default_rng([seed, gi])
        scale = wanted[group] * total / available[group]
        docs = pools[group]
        expected = np.array([d.factor * scale for d in docs])
        n_copies = np.floor(expected).astype(np.int64)
        n_copies += rng.random(len(docs)) < (expected - n_copies)
        tokens = int(sum(int(c) * d.tokens for c, d in zip(n_copies, docs)))
        for idx, c in enumerate(n_copies):
            plan.extend([(group, idx)] * int(c))
        report["groups"][group] = {
            "share_target": wanted[group], "tokens_available": int(available[group]),
            "tokens_target": int(wanted[group] * total), "tokens_mixed": tokens,
            "documents": len(docs), "copies": int(n_copies.sum()), "scale": scale,
        }
    order = np.random.default_rng(seed).permutation(len(plan))
    plan = [plan[i] for i in order]
    mixed = sum(g["tokens_mixed"] for g in report["groups"].values()) or 1
    for g in report["groups"].values():
        g["share_mixed"] = g["tokens_mixed"] / mixed
    report["tokens_mixed"] = mixed
    return plan, report


def repeat_epochs(scale: float) -> int:
    """How many times the most repeated document of a group is seen (for the report)."""
    return math.ceil(scale)
