"""Near-duplicate removal: Jaccard similarity against a sliding window of recent passages."""

from __future__ import annotations

from collections import deque
from typing import FrozenSet

from mcbio.data.curation.text import normalise_for_fidelity


def shingles(text: str, n: int = 1) -> FrozenSet[str]:
    tokens = normalise_for_fidelity(text).split()
    if n <= 1:
        return frozenset(tokens)
    return frozenset(" ".join(tokens[i : i + n]) for i in range(max(1, len(tokens) - n + 1)))


def jaccard(a: FrozenSet[str], b: FrozenSet[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class WindowDeduplicator:
    """Keeps a passage unless its Jaccard similarity to one of the last ``window`` kept
    passages reaches ``threshold``. Cost is O(window) set comparisons per passage."""

    def __init__(self, threshold: float = 0.8, window: int = 5, ngram: int = 1) -> None:
        self.threshold = threshold
        self.ngram = ngram
        self.recent: deque[FrozenSet[str]] = deque(maxlen=window)

    def is_duplicate(self, text: str) -> tuple[bool, float]:
        sh = shingles(text, self.ngram)
        best = max((jaccard(sh, prev) for prev in self.recent), default=0.0)
        if best >= self.threshold:
            return True, best
        self.recent.append(sh)
        return False, best
