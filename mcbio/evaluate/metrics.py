"""Metrics: seqeval entity F1 (strict IOB2 and lenient), macro/micro F1 (scikit-learn)."""

from __future__ import annotations

import numpy as np
from seqeval.metrics import f1_score as seqeval_f1
from seqeval.scheme import IOB2
from sklearn.metrics import f1_score


def ner_scores(true: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
    """Strict = exact span and type under IOB2 (the paper's metric); lenient = seqeval's default
    (conlleval-style: an ``I-X`` that follows ``O`` or another type opens an entity)."""
    return {
        "strict_f1": float(seqeval_f1(true, pred, mode="strict", scheme=IOB2, zero_division=0)),
        "lenient_f1": float(seqeval_f1(true, pred, zero_division=0)),
    }


def single_label_scores(true: list[int], pred: list[int], num_labels: int) -> dict[str, float]:
    """Macro-F1 over every label of the task (the paper's metric for single-label tasks) and micro-F1."""
    labels = list(range(num_labels))
    return {
        "macro_f1": float(f1_score(true, pred, labels=labels, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(true, pred, labels=labels, average="micro", zero_division=0)),
    }


def multi_label_scores(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Micro-F1 over the (examples x labels) indicator matrices (the paper's metric) and macro-F1."""
    true, pred = np.asarray(true, dtype=int), np.asarray(pred, dtype=int)
    return {
        "micro_f1": float(f1_score(true, pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(true, pred, average="macro", zero_division=0)),
    }
