"""Pack tokenised documents into fixed-length sequences with per-token document ids.

Documents are concatenated in order; one that crosses a sequence end continues at the
start of the next sequence (nothing is dropped, no padding inside the stream). Each
sequence carries ``document_ids``: 1, 2, ... for the document segments it holds and 0
for padding, which only the very last sequence may have. Attention and labels use
these ids so that packed documents stay independent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset


@dataclass
class PackedSequences:
    input_ids: np.ndarray  # (num_sequences, seq_len) int32
    document_ids: np.ndarray  # (num_sequences, seq_len) int32, 0 = padding

    @property
    def padding_fraction(self) -> float:
        return float((self.document_ids == 0).mean()) if self.document_ids.size else 0.0

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "input_ids.npy", self.input_ids)
        np.save(folder / "document_ids.npy", self.document_ids)

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


def pack_documents(documents: Iterable[Sequence[int]], seq_len: int, pad_id: int) -> PackedSequences:
    """Concatenate token lists into ``seq_len`` rows, splitting documents at row ends."""
    rows_ids: list[np.ndarray] = []
    rows_docs: list[np.ndarray] = []
    cur_ids = np.full(seq_len, pad_id, dtype=np.int32)
    cur_docs = np.zeros(seq_len, dtype=np.int32)
    fill, segment = 0, 0
    for tokens in documents:
        tokens = np.asarray(tokens, dtype=np.int32)
        start = 0
        while start < len(tokens):
            take = min(seq_len - fill, len(tokens) - start)
            segment += 1
            cur_ids[fill : fill + take] = tokens[start : start + take]
            cur_docs[fill : fill + take] = segment
            fill += take
            start += take
            if fill == seq_len:
                rows_ids.append(cur_ids)
                rows_docs.append(cur_docs)
                cur_ids = np.full(seq_len, pad_id, dtype=np.int32)
                cur_docs = np.zeros(seq_len, dtype=np.int32)
                fill, segment = 0, 0
    if fill:
        rows_ids.append(cur_ids)
        rows_docs.append(cur_docs)
    if not rows_ids:
        return PackedSequences(np.zeros((0, seq_len), np.int32), np.zeros((0, seq_len), np.int32))
    return PackedSequences(np.stack(rows_ids), np.stack(rows_docs))


class PackedDataset(Dataset):
    """Map-style view over packed rows (memory-mapped when loaded from disk)."""

    def __init__(self, packed: PackedSequences) -> None:
        self.packed = packed

    def __len__(self) -> int:
        return len(self.packed.input_ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {
            "input_ids": torch.from_numpy(np.array(self.packed.input_ids[index], dtype=np.int64)),
            "document_ids": torch.from_numpy(np.array(self.packed.document_ids[index], dtype=np.int64)),
            # The sample index seeds MLM masking, so a resumed run masks exactly as before.
            "sample_index": torch.tensor(index, dtype=torch.int64),
        }
