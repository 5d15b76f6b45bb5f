"""Metrics: seqeval entity F1 (strict IOB2 and lenient), macro/micro F1."""

from __future__ import annotations

from seqeval.metrics import f1_score
from seqeval.scheme import IOB2


def ner_scores(true: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
    """Strict = exact span and type under IOB2 (the paper's metric); lenient = seqeval's default (conlleval-style)."""
    return {
        "strict_f1": float(f1_score(true, pred, mode="strict", scheme=IOB2, zero_division=0)),
        "lenient_f1": float(f1_score(true, pred, zero_division=0)),
    }
