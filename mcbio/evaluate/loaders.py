"""Readers for evaluation data formats."""

from __future__ import annotations

from pathlib import Path


def read_conll(path: str | Path) -> list[tuple[list[str], list[str]]]:
    """``token<TAB or space>tag`` per line, blank line between sentences (IOB2 tags, last column)."""
    sentences, tokens, tags = [], [], []
    with open(path, encoding="utf-8") as handle:
        for line_no, raw in enumerate(handle, start=1):
            line = raw.rstrip("\n")
            if not line.strip():
                if tokens:
                    sentences.append((tokens, tags))
                    tokens, tags = [], []
                continue
            if line.startswith("-DOCSTART-"):
                continue
            parts = line.split("\t") if "\t" in line else line.split()
            if len(parts) < 2:
                raise ValueError(f"{path}:{line_no}: expected 'token<TAB>tag', got {line!r}")
            tag = parts[-1]
            if tag != "O" and not (tag[:2] in ("B-", "I-") and len(tag) > 2):
                raise ValueError(f"{path}:{line_no}: tag {tag!r} is not IOB2 (O, B-X, I-X)")
            tokens.append(parts[0])
            tags.append(tag)
    if tokens:
        sentences.append((tokens, tags))
    if not sentences:
        raise ValueError(f"{path}: no sentences")
    return sentences
