"""Packed training shards on disk, and the deterministic stream that training reads.

Layout of a shard folder (what ``data.shards`` points to)::

    index.json                  format, seq_len, pad_id, shard list, packing stats
    shard-00000/input_ids.npy   (rows, seq_len) token ids     } the PackedSequences format,
    shard-00000/document_ids.npy (rows, seq_len) 0 = padding  } memory-mapped when read
    ...

Writing streams: rows are packed as token lists arrive and each shard's files are written
atomically (:mod:`mcbio.files`), ``index.json`` last, so a crash never leaves a folder that
looks complete. Ids are stored as uint16 when they fit (vocab < 65,536), halving the
disk footprint of a 10B-token corpus.

Reading never loads the corpus: :class:`PackedShards` memory-maps each shard on first
use, and :class:`PackedStream` turns it into an endless, seeded order of rows (a new
permutation each pass over the data) that Composer can checkpoint and resume in O(1).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info
from tqdm.auto import tqdm

from mcbio.data.packing import BoundaryTokens, PackedSequences, PackingStats, iter_packed_rows, row_sample
from mcbio.files import write_json_atomic

FORMAT = "mcbio-packed-shards"
VERSION = 1
INDEX = "index.json"


def _id_dtype(max_value: int) -> np.dtype:
    return np.dtype(np.uint16) if max_value < 2**16 else np.dtype(np.int32)


def _write_shard(out_dir: Path, number: int, ids: np.ndarray, docs: np.ndarray) -> dict:
    name = f"shard-{number:05d}"
    PackedSequences(ids.astype(_id_dtype(int(ids.max(initial=0)))),
                    docs.astype(_id_dtype(int(docs.max(initial=0))))).save(out_dir / name)
    return {"name": name, "num_sequences": int(len(ids))}


def write_packed_shards(
    token_lists: Iterable[Sequence[int]],
    out_dir: str | Path,
    seq_len: int,
    pad_id: int,
    sequences_per_shard: int = 4096,
    boundaries: BoundaryTokens | None = None,
    max_split_padding: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Pack ``token_lists`` (one per document, in order) into a shard folder; return its stats.

    ``boundaries`` (e.g. ``BoundaryTokens.from_tokenizer(tok)``) and ``max_split_padding``
    let cuts fall at paragraph or sentence ends (see :mod:`mcbio.data.packing`); without
    them documents are cut exactly at row ends. Nothing is ever truncated.
    """
    out_dir = Path(out_dir)
    if (out_dir / INDEX).exists() and not overwrite:
        raise FileExistsError(f"{out_dir / INDEX} exists: shards already written there (pass overwrite=True to replace)")
    if sequences_per_shard < 1:
        raise ValueError(f"sequences_per_shard must be positive, got {sequences_per_shard}")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / INDEX).unlink(missing_ok=True)
    for old in out_dir.glob("shard-*"):
        shutil.rmtree(old)
    stats = PackingStats()
    buf_ids = np.empty((sequences_per_shard, seq_len), dtype=np.int32)
    buf_docs = np.empty((sequences_per_shard, seq_len), dtype=np.int32)
    shards: list[dict] = []
    filled = 0
    rows = iter_packed_rows(token_lists, seq_len, pad_id, boundaries, max_split_padding, stats)
    for ids, docs in tqdm(rows, desc=f"packing {out_dir.name}", unit="seq", disable=not progress, mininterval=2):
        buf_ids[filled], buf_docs[filled] = ids, docs
        filled += 1
        if filled == sequences_per_shard:
            shards.append(_write_shard(out_dir, len(shards), buf_ids, buf_docs))
            filled = 0
    if filled:
        shards.append(_write_shard(out_dir, len(shards), buf_ids[:filled], buf_docs[:filled]))
    if not shards:
        raise ValueError(f"{out_dir}: no tokens to pack (every document was empty)")
    summary = stats.as_dict() | {"shards": len(shards), "seq_len": seq_len, "max_split_padding": max_split_padding}
    index = {"format": FORMAT, "version": VERSION, "seq_len": seq_len, "pad_id": pad_id, "shards": shards, "stats": summary}
    write_json_atomic(out_dir / INDEX, index, indent=1)
    return summary


class PackedShards:
    """Random access to the rows of a shard folder (or of one PackedSequences folder), memory-mapped."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        index_path = self.folder / INDEX
        if index_path.is_file():
            try:
                index = json.loads(index_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise ValueError(f"{index_path}: invalid JSON ({err.msg})") from None
            if index.get("format") != FORMAT:
                raise ValueError(f"{index_path}: not an mcbio shard index (format={index.get('format')!r})")
            self.seq_len = int(index["seq_len"])
            self.stats = index.get("stats", {})
            self.shard_dirs = [self.folder / s["name"] for s in index["shards"]]
            counts = [int(s["num_sequences"]) for s in index["shards"]]
        elif (self.folder / "input_ids.npy").is_file():
            one = PackedSequences.load(self.folder)
            self.seq_len, self.stats = int(one.input_ids.shape[1]), {}
            self.shard_dirs, counts = [self.folder], [len(one.input_ids)]
        else:
            raise FileNotFoundError(f"data.shards: {self.folder} has neither {INDEX} nor input_ids.npy")
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._open: dict[int, PackedSequences] = {}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _shard(self, number: int) -> PackedSequences:
        if number not in self._open:
            shard = PackedSequences.load(self.shard_dirs[number])
            expected = int(self.offsets[number + 1] - self.offsets[number])
            if shard.input_ids.shape != (expected, self.seq_len):
                raise ValueError(f"{self.shard_dirs[number]}: shape {shard.input_ids.shape}, index says ({expected}, {self.seq_len})")
            self._open[number] = shard
        return self._open[number]

    def row(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} outside 0..{len(self) - 1}")
        number = int(np.searchsorted(self.offsets, index, side="right")) - 1
        shard = self._shard(number)
        local = index - int(self.offsets[number])
        return shard.input_ids[local], shard.document_ids[local]

    def __getstate__(self) -> dict:  # data-loader workers re-open their own memory maps
        return {**self.__dict__, "_open": {}}


class PackedStream(IterableDataset):
    """Endless, seeded order of packed rows, split into global batches across ranks.

    Stream position ``p`` is row ``perm_e[p % N]`` with ``e = p // N`` and ``perm_e`` a
    permutation seeded by ``(seed, e)``. Global batch ``b`` is positions
    ``[b*G, (b+1)*G)``; rank ``r`` takes its ``r``-th slice of ``G / world`` rows. The order
    is therefore the same whatever the number of GPUs, and a run and its control that
    share ``seed`` see the same rows in the same order. Each data-loader worker produces
    every ``num_workers``-th batch, which PyTorch interleaves back in order.

    Composer checkpoints :meth:`state_dict` (samples seen) and calls
    :meth:`load_state_dict` on resume, so resuming skips to the right batch without
    reading the skipped rows. ``sample_index`` is the stream position: it seeds MLM
    masking, so masks are identical after a resume and differ between passes.
    """

    def __init__(self, shards: PackedShards, global_batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        super().__init__()
        if len(shards) == 0:
            raise ValueError(f"{shards.folder}: no packed sequences")
        if global_batch_size % world_size:
            raise ValueError(f"global batch {global_batch_size} is not divisible by {world_size} ranks")
        self.shards = shards
        self.global_batch_size = global_batch_size
        self.per_rank = global_batch_size // world_size
        self.seed = seed
        self.rank = rank
        self.start_batch = 0
        self._perm_epoch: int | None = None
        self._perm: np.ndarray | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm_epoch != epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.shards))
            self._perm_epoch = epoch
        return self._perm  # type: ignore[return-value]

    def row_at(self, position: int) -> int:
        n = len(self.shards)
        return int(self._permutation(position // n)[position % n])

    def batch_positions(self, batch: int) -> range:
        first = batch * self.global_batch_size + self.rank * self.per_rank
        return range(first, first + self.per_rank)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        batch = self.start_batch + worker
        while True:
            for position in self.batch_positions(batch):
                ids, docs = self.shards.row(self.row_at(position))
                yield row_sample(ids, docs, position)
            batch += workers

    # Composer's dataset-resumption hooks --------------------------------------------
    def _identity(self) -> dict[str, Any]:
        return {"seed": self.seed, "num_sequences": len(self.shards), "global_batch_size": self.global_batch_size}

    def state_dict(self, num_samples: int, from_beginning: bool) -> dict[str, Any]:
        seen = num_samples if from_beginning else self.start_batch * self.global_batch_size + num_samples
        return {"samples_seen": int(seen), **self._identity()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mismatched = {k: (state.get(k), v) for k, v in self._identity().items() if state.get(k) != v}
        if mismatched:
            detail = ", ".join(f"{k}: checkpoint {a} vs now {b}" for k, (a, b) in mismatched.items())
            raise ValueError(f"cannot resume the data stream with the same order: {detail}")
        seen = int(state["samples_seen"])
        if seen % self.global_batch_size:
            raise ValueError(f"checkpoint saw {seen} samples, not a whole number of global batches of {self.global_batch_size}")
        self.start_batch = seen // self.global_batch_size

    def passes(self, num_batches: int) -> float:
        """How many times ``num_batches`` global batches go over the data."""
        return num_batches * self.global_batch_size / len(self.shards)
