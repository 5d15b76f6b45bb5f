"""Extraction fidelity: how much of an extracted passage is found, in order, in its source.

Both texts are normalised (lowercase, no diacritics, no punctuation, single spaces). The
passage is located in the source by word alignment, then compared character by character
with that region: overlap = matched characters / passage characters.
"""

from __future__ import annotations

from difflib import SequenceMatcher
from typing import Dict, Iterable, List

from mcbio.data.curation.text import normalise_for_fidelity


def _source_region(passage_words: List[str], source_words: List[str]) -> tuple[int, int]:
    matcher = SequenceMatcher(None, passage_words, source_words, autojunk=False)
    blocks = [b for b in matcher.get_matching_blocks() if b.size]
    if not blocks:
        return 0, 0
    # Pad by the passage length so edits at the ends still find their characters.
    slack = max(5, len(passage_words) // 10)
    return max(0, blocks[0].b - slack), min(len(source_words), blocks[-1].b + blocks[-1].size + slack)


def character_overlap(passage: str, source: str) -> float:
    p = normalise_for_fidelity(passage)
    s = normalise_for_fidelity(source)
    if not p:
        return 0.0
    if p in s:
        return 1.0
    p_words, s_words = p.split(), s.split()
    lo, hi = _source_region(p_words, s_words)
    region = " ".join(s_words[lo:hi])
    if not region:
        return 0.0
    matcher = SequenceMatcher(None, p, region, autojunk=False)
    matched = sum(b.size for b in matcher.get_matching_blocks())
    return matched / len(p)


def fidelity_distribution(overlaps: Iterable[float], thresholds: Iterable[float]) -> Dict[str, float]:
    """Share of passages at or above each threshold, keyed like the paper's table ('>=99%')."""
    values = list(overlaps)
    out: Dict[str, float] = {"passages": float(len(values))}
    for t in sorted(thresholds, reverse=True):
        share = sum(v >= t for v in values) / len(values) if values else 0.0
        out[f">={round(t * 100)}%"] = share
    return out
