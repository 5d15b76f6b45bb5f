"""Flag degenerate fine-tuning runs: nothing learnt, or predictions collapsed onto one class.

A run is *degenerate* when

* its validation score never rose above zero (every epoch of ``dev_history`` <= 0), or
* its test predictions are a single class: for NER every word gets the same tag (all
  ``O``, or one label only); for single-label classification every example gets the same
  class; for multi-label classification every example gets the same label set (including
  always the empty set).

Such a run still produces numbers (often 0.0, sometimes a plausible-looking micro-F1 from
always predicting the majority labels), so it must be marked rather than silently
averaged with the others. :func:`degenerate_reason` returns a short human-readable reason
(or None); :func:`mcbio.evaluate.run.evaluate_task` returns it as ``degenerate`` and logs a
warning, the launcher writes it into the records' ``extra`` and the LaTeX table marks the
(model, task) cell with a dagger.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

EMPTY_SET = "{}"


def ner_prediction_counts(predictions: Iterable[Sequence[str]]) -> Counter:
    """How many words got each tag, over every test sentence."""
    counts: Counter = Counter()
    for tags in predictions:
        counts.update(tags)
    return counts


def single_label_prediction_counts(predictions: Iterable[int], labels: Sequence[str]) -> Counter:
    """How many examples got each class (by name)."""
    return Counter(labels[int(p)] for p in predictions)


def multi_label_prediction_counts(predictions, labels: Sequence[str]) -> Counter:
    """How many examples got each label *set* (``"A|B"``; ``"{}"`` for no label at all)."""
    counts: Counter = Counter()
    for row in predictions:
        chosen = [labels[j] for j, on in enumerate(row) if on]
        counts["|".join(chosen) if chosen else EMPTY_SET] += 1
    return counts


def _short(values: Sequence[float], keep: int = 10) -> str:
    shown = [round(float(v), 4) for v in values]
    if len(shown) > keep:
        return "[" + ", ".join(map(str, shown[:keep])) + f", ... ({len(shown)} epochs)]"
    return str(shown)


def dev_reason(dev_history: Sequence[float]) -> str | None:
    """``"dev score never above 0 (history [0.0, 0.0])"`` when no epoch scored above zero."""
    if dev_history and max(dev_history) <= 0:
        return f"dev score never above 0 (history {_short(dev_history)})"
    return None


def prediction_reason(counts: Counter, unit: str = "examples") -> str | None:
    """``"test predictions are a single class ('O')"`` when every counted prediction is the same.

    A test split of fewer than two predictions says nothing and is not flagged.
    """
    if sum(counts.values()) < 2 or len(counts) != 1:
        return None
    (only,) = counts
    what = "the empty label set" if only == EMPTY_SET else repr(only)
    return f"test predictions are a single class ({what}) for all {sum(counts.values())} {unit}"


def degenerate_reason(dev_history: Sequence[float], prediction_counts: Counter | None,
                      unit: str = "examples") -> str | None:
    """Every reason that applies, joined by ``"; "``, or None for a healthy run."""
    reasons = [r for r in (dev_reason(dev_history),
                           prediction_reason(prediction_counts, unit) if prediction_counts is not None else None) if r]
    return "; ".join(reasons) or None
