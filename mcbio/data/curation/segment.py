"""Cut long documents into ~N-token chunks at paragraph ends (sentence ends for giant paragraphs)."""

from __future__ import annotations

from typing import Callable, List

from mcbio.data.curation.text import paragraphs, sentences


def segment_text(text: str, target_tokens: int, count: Callable[[str], int]) -> List[str]:
    """Greedy: add paragraphs to the chunk until the next would pass ``target_tokens``.

    A paragraph longer than the target on its own is cut at sentence ends; a single
    sentence longer than the target stays whole (never cut mid-sentence).
    """
    units: List[tuple[str, int, str]] = []  # (text, tokens, joiner before it)
    for para in paragraphs(text):
        n = count(para)
        if n <= target_tokens:
            units.append((para, n, "\n\n"))
            continue
        for k, sent in enumerate(sentences(para)):
            units.append((sent, count(sent), "\n\n" if k == 0 else " "))
    chunks: List[str] = []
    current, size = "", 0
    for unit, n, joiner in units:
        if current and size + n > target_tokens:
            chunks.append(current)
            current, size = "", 0
        current = f"{current}{joiner}{unit}" if current else unit
        size += n
    if current:
        chunks.append(current)
    return chunks
