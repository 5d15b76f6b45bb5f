"""Pack tokenised documents into fixed-length sequences with per-token document ids.

Documents are concatenated in order. Each row carries ``document_ids``: 1, 2, ... for
the document segments it holds and 0 for padding. Attention and labels use these ids
so that packed documents stay independent.

A document that does not fit in what is left of a row is split, never truncated: the
rest continues at the start of the next row. Where the split falls is governed by
``max_split_padding``: the row may end up to that many tokens early so that the cut
falls at a paragraph or sentence end (the latest one in that window), else (no boundary close
enough) exactly at the row end. A document's start counts as a paragraph end, so a
short document that would straddle a row is moved whole to the next row when the gap
is small. ``max_split_padding=0`` is strict no-padding packing (cuts at row ends only).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from mcbio.files import atomic_open

# Decoded-token suffixes that end a sentence; a newline ends a paragraph.
SENTENCE_ENDS = (".", "!", "?", ";", "…", ".»", ".)", '."')
PARAGRAPH_MARK = "\n"


@dataclass(frozen=True)
class BoundaryTokens:
    """Token ids after which a cut is a paragraph end / a sentence end."""

    paragraph: frozenset[int] = frozenset()
    sentence: frozenset[int] = frozenset()

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "BoundaryTokens":
        """Scan the vocabulary once: tokens containing a newline end paragraphs, tokens
        ending in sentence punctuation end sentences. Special tokens are neither (a document's
        own start is always a paragraph boundary, see :func:`iter_packed_rows`)."""
        paragraph, sentence = set(), set()
        specials = set(tokenizer.all_special_ids)
        for token, token_id in tokenizer.get_vocab().items():
            if token_id in specials:
                continue
            text = tokenizer.convert_tokens_to_string([token])
            if PARAGRAPH_MARK in text:
                paragraph.add(token_id)
            elif text.rstrip().endswith(SENTENCE_ENDS):
                sentence.add(token_id)
        return cls(frozenset(paragraph), frozenset(sentence) | frozenset(paragraph))


@dataclass
class PackingStats:
    documents: int = 0
    tokens: int = 0
    sequences: int = 0
    padding_tokens: int = 0
    # Cuts that split a document across rows, by where they fell.
    cuts_at_paragraph: int = 0
    cuts_at_sentence: int = 0
    cuts_mid_sentence: int = 0
    # Documents moved whole to the next row instead of being cut.
    documents_moved: int = 0
    longest_document: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def padding_fraction(self) -> float:
        total = self.tokens + self.padding_tokens
        return self.padding_tokens / total if total else 0.0

    def as_dict(self) -> dict:
        out = asdict(self)
        out.pop("extra")
        out.update(self.extra)
        out["padding_fraction"] = self.padding_fraction
        return out


def _breaks(tokens: np.ndarray, ids: frozenset[int]) -> np.ndarray:
    """Sorted cut positions after a boundary token (cut k = between tokens k-1 and k)."""
    if not ids:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.isin(tokens, np.fromiter(ids, dtype=np.int64))) + 1


def _last_in(breaks: np.ndarray, lo: int, hi: int) -> int | None:
    """Largest break in [lo, hi], or None."""
    i = int(np.searchsorted(breaks, hi, side="right")) - 1
    return int(breaks[i]) if i >= 0 and breaks[i] >= lo else None


def iter_packed_rows(
    documents: Iterable[Sequence[int]],
    seq_len: int,
    pad_id: int,
    boundaries: BoundaryTokens | None = None,
    max_split_padding: int = 0,
    stats: PackingStats | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(input_ids, document_ids)`` rows of ``seq_len`` (int32), streaming."""
    if seq_len < 2:
        raise ValueError(f"seq_len must be at least 2, got {seq_len}")
    if not 0 <= max_split_padding < seq_len:
        raise ValueError(f"max_split_padding must be in [0, seq_len), got {max_split_padding}")
    stats = stats if stats is not None else PackingStats()
    boundaries = boundaries or BoundaryTokens()
    empty = np.zeros(0, dtype=np.int64)
    cur_ids = np.full(seq_len, pad_id, dtype=np.int32)
    cur_docs = np.zeros(seq_len, dtype=np.int32)
    fill = segment = 0

    def emit() -> tuple[np.ndarray, np.ndarray]:
        nonlocal cur_ids, cur_docs, fill, segment
        row = (cur_ids, cur_docs)
        stats.sequences += 1
        stats.padding_tokens += seq_len - fill
        cur_ids = np.full(seq_len, pad_id, dtype=np.int32)
        cur_docs = np.zeros(seq_len, dtype=np.int32)
        fill = segment = 0
        return row

    for tokens in documents:
        tokens = np.asarray(tokens, dtype=np.int64)
        n = len(tokens)
        if n == 0:
            continue
        stats.documents += 1
        stats.tokens += n
        stats.longest_document = max(stats.longest_document, n)
        para = np.concatenate([[0], _breaks(tokens, boundaries.paragraph)]) if max_split_padding else empty
        sent = _breaks(tokens, boundaries.sentence) if max_split_padding else empty
        start = 0
        while start < n:
            room = seq_len - fill
            if n - start <= room:
                cut, kind = n, None
            else:
                limit = start + room
                # A cut at ``start`` leaves this row as is: only allowed if the row holds something.
                lo = max(limit - max_split_padding, start + (fill == 0))
                # The latest boundary in the window wastes the least; paragraph ends are sentence ends too.
                cut = _last_in(sent, lo, limit)
                at_para = _last_in(para, lo, limit)
                if at_para is not None and (cut is None or at_para >= cut):
                    cut, kind = at_para, "paragraph"
                elif cut is not None:
                    kind = "sentence"
                else:
                    cut, kind = limit, "mid"
            if cut > start:
                segment += 1
                cur_ids[fill : fill + cut - start] = tokens[start:cut]
                cur_docs[fill : fill + cut - start] = segment
                fill += cut - start
            if kind is not None:
                if cut == start:
                    stats.documents_moved += 1
                elif kind == "paragraph":
                    stats.cuts_at_paragraph += 1
                elif kind == "sentence":
                    stats.cuts_at_sentence += 1
                else:
                    stats.cuts_mid_sentence += 1
                yield emit()
            elif fill == seq_len:
                yield emit()
            start = cut
    if fill:
        yield emit()


@dataclass
class PackedSequences:
    input_ids: np.ndarray  # (num_sequences, seq_len) integer ids
    document_ids: np.ndarray  # (num_sequences, seq_len) integers, 0 = padding

    @property
    def padding_fraction(self) -> float:
        return float((self.document_ids == 0).mean()) if self.document_ids.size else 0.0

    def save(self, folder: str | Path) -> None:
        """Each array is written atomically, ``input_ids.npy`` last: a folder that has it is complete."""
        folder = Path(folder)
        for name, array in (("document_ids.npy", self.document_ids), ("input_ids.npy", self.input_ids)):
            with atomic_open(folder / name, "wb") as handle:
                np.save(handle, array)

    @classmethod
    def load(cls, folder: str | Path, mmap: bool = True) -> "PackedSequences":
        folder = Path(folder)
        mode = "r" if mmap else None
        try:
            ids = np.load(folder / "input_ids.npy", mmap_mode=mode)
            docs = np.load(folder / "document_ids.npy", mmap_mode=mode)
        except (OSError, ValueError) as err:
            raise ValueError(f"{folder}: unreadable packed shard ({err})") from None
        if ids.shape != docs.shape or ids.ndim != 2:
            raise ValueError(f"{folder}: input_ids {ids.shape} and document_ids {docs.shape} do not match")
        return cls(ids, docs)


def pack_documents(
    documents: Iterable[Sequence[int]],
    seq_len: int,
    pad_id: int,
    boundaries: BoundaryTokens | None = None,
    max_split_padding: int = 0,
    stats: PackingStats | None = None,
) -> PackedSequences:
    """In-memory packing (small corpora, tests); :func:`mcbio.data.shards.write_packed_shards` streams to disk."""
    rows = list(iter_packed_rows(documents, seq_len, pad_id, boundaries, max_split_padding, stats))
    if not rows:
        return PackedSequences(np.zeros((0, seq_len), np.int32), np.zeros((0, seq_len), np.int32))
    return PackedSequences(np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows]))


def row_sample(input_ids: np.ndarray, document_ids: np.ndarray, sample_index: int) -> dict[str, torch.Tensor]:
    return {
        "input_ids": torch.from_numpy(np.asarray(input_ids, dtype=np.int64)),
        "document_ids": torch.from_numpy(np.asarray(document_ids, dtype=np.int64)),
        # The sample index seeds MLM masking, so a resumed run masks exactly as before.
        "sample_index": torch.tensor(sample_index, dtype=torch.int64),
    }
