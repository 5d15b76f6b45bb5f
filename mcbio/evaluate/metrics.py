"""Metrics: seqeval entity F1 (strict IOB2 and lenient), macro/micro F1 (scikit-learn).

Macro averages run over the labels present in the gold or the predicted test labels
(scikit-learn's default), not over every training label: a label that neither occurs
in the test split nor is ever predicted has no defined F1 and does not enter the mean.
A gold label the model has no output for (seen only in dev/test, see
:mod:`mcbio.evaluate.classify`) is a class of its own that is never predicted: its
occurrences are misses, and it enters the macro mean with F1 0.
Multi-label decisions are a 0.5 threshold on the sigmoid (the paper's metric); the
``*_top1`` variants also force the most probable label when none passes the threshold,
as the authors' harness does.
"""

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


def single_label_scores(true: list[int], pred: list[int], num_labels: int | None = None) -> dict[str, float]:
    """Macro-F1 over the labels present in ``true`` or ``pred`` (the paper's single-label metric) and micro-F1.

    ``num_labels`` (the training label count) is accepted for callers that pass it; it does
    not widen the average. Gold ids at or beyond it (labels never seen in training, one id
    each) are classes that are never predicted.
    """
    del num_labels
    return {
        "macro_f1": float(f1_score(true, pred, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(true, pred, average="micro", zero_division=0)),
    }


def multi_label_decisions(probs: np.ndarray, threshold: float = 0.5, force_top1: bool = False) -> np.ndarray:
    """0/1 decisions from per-label probabilities; ``force_top1`` sets the arg-max label of rows with none."""
    probs = np.asarray(probs, dtype=float)
    pred = (probs >= threshold).astype(int)
    if force_top1 and pred.size:
        empty = pred.sum(axis=1) == 0
        pred[np.flatnonzero(empty), probs[empty].argmax(axis=1)] = 1
    return pred


def multi_label_scores(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Micro-F1 over the (examples x labels) indicator matrices (the paper's metric) and macro-F1.

    Macro-F1 averages over the labels (columns) with a positive in the gold or the predictions.
    ``true`` may have more columns than ``pred``: the extra ones are labels the model has no
    output for, predicted for no example.
    """
    true, pred = np.asarray(true, dtype=int), np.asarray(pred, dtype=int)
    if true.ndim == 2 and pred.ndim == 2 and pred.shape[1] < true.shape[1]:
        pred = np.pad(pred, ((0, 0), (0, true.shape[1] - pred.shape[1])))
    present = [j for j in range(true.shape[1]) if true[:, j].any() or pred[:, j].any()] if true.ndim == 2 else None
    return {
        "micro_f1": float(f1_score(true, pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(true, pred, labels=present, average="macro", zero_division=0)) if present else 0.0,
    }


def multi_label_report(true: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """``micro_f1`` / ``macro_f1`` at ``threshold`` (the paper's), and ``micro_f1_top1`` / ``macro_f1_top1``
    with the top-1 label forced when nothing passes (the authors' harness). ``true``'s columns beyond
    ``probs``' are labels the model cannot output (never predicted, not even as the forced top-1)."""
    plain = multi_label_scores(true, multi_label_decisions(probs, threshold))
    top1 = multi_label_scores(true, multi_label_decisions(probs, threshold, force_top1=True))
    return {**plain, "micro_f1_top1": top1["micro_f1"], "macro_f1_top1": top1["macro_f1"]}
