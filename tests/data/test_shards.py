"""Shard folders: written atomically, read memory-mapped, streamed in a seeded, resumable order."""

import json

import numpy as np
import pytest
from torch.utils.data import DataLoader

from mcbio.data.shards import PackedShards, PackedStream, write_packed_shards


def _docs(n=120, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(5, 500, size=int(k)).tolist() for k in rng.integers(3, 90, size=n)]


def test_roundtrip_and_index(tmp_path):
    docs = _docs()
    stats = write_packed_shards(docs, tmp_path / "s", seq_len=32, pad_id=0, sequences_per_shard=40, progress=False)
    index = json.loads((tmp_path / "s" / "index.json").read_text())
    shards = PackedShards(tmp_path / "s")
    assert stats["shards"] == len(index["shards"]) > 1 and len(shards) == stats["sequences"]
    flat = []
    for i in range(len(shards)):
        ids, doc_ids = shards.row(i)
        flat += ids[doc_ids != 0].tolist()
    assert flat == [t for d in docs for t in d]
    assert shards.row(0)[0].dtype == np.uint16  # ids < 65,536 stored on 2 bytes
    assert isinstance(shards.row(0)[0], np.memmap) or isinstance(shards.row(0)[0].base, np.memmap)
    with pytest.raises(FileExistsError):
        write_packed_shards(docs, tmp_path / "s", seq_len=32, pad_id=0, progress=False)
    assert not list((tmp_path / "s").glob(".*tmp"))


def _positions(stream, batches):
    it = iter(DataLoader(stream, batch_size=stream.per_rank))
    return [next(it)["sample_index"].tolist() for _ in range(batches)]


def test_stream_is_seeded_world_size_independent_and_resumable(tmp_path):
    write_packed_shards(_docs(), tmp_path / "s", seq_len=32, pad_id=0, sequences_per_shard=40, progress=False)
    shards = PackedShards(tmp_path / "s")
    one = PackedStream(shards, global_batch_size=8, seed=42)
    rows_one = [[one.row_at(p) for p in b] for b in _positions(one, 40)]  # 320 > rows: several passes
    # Two ranks see the two halves of the same global batches.
    ranks = [PackedStream(shards, 8, 42, rank=r, world_size=2) for r in (0, 1)]
    halves = [_positions(s, 40) for s in ranks]
    assert [a + b for a, b in zip(*halves)] == _positions(PackedStream(shards, 8, 42), 40)
    # Each pass over the data is a permutation, and passes differ.
    n = len(shards)
    flat = [r for b in rows_one for r in b]
    assert sorted(flat[:n]) == list(range(n)) and flat[:n] != flat[n : 2 * n]
    assert rows_one != [[PackedStream(shards, 8, 7).row_at(p) for p in b] for b in _positions(one, 40)]
    # Resume after 13 batches: Composer hands back the state dict and the stream continues.
    state = one.state_dict(num_samples=13 * 8, from_beginning=True)
    resumed = PackedStream(shards, 8, 42)
    resumed.load_state_dict(state)
    assert _positions(resumed, 5) == _positions(one, 18)[13:]
    with pytest.raises(ValueError, match="global_batch_size"):
        PackedStream(shards, 16, 42).load_state_dict(state)


def test_workers_preserve_order(tmp_path):
    write_packed_shards(_docs(), tmp_path / "s", seq_len=32, pad_id=0, progress=False)
    stream = PackedStream(PackedShards(tmp_path / "s"), 4, 42)
    it = iter(DataLoader(stream, batch_size=4, num_workers=2))
    got = [next(it)["sample_index"].tolist() for _ in range(6)]
    assert got == [list(range(4 * b, 4 * b + 4)) for b in range(6)]


def test_bad_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        PackedShards(tmp_path)
