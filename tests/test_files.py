"""Atomic writes: a failed write leaves the old file and no temporary behind."""

from __future__ import annotations

import json

import pytest

from mcbio.files import atomic_open, write_json_atomic, write_jsonl_atomic, write_text_atomic


def test_writes_replace_the_file_whole(tmp_path):
    target = tmp_path / "sub" / "out.json"
    write_json_atomic(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert write_jsonl_atomic(tmp_path / "rows.jsonl", iter([{"x": 1}, {"x": 2}])) == 2
    assert (tmp_path / "rows.jsonl").read_text().splitlines() == ['{"x": 1}', '{"x": 2}']
    write_text_atomic(target, "été")
    assert target.read_text(encoding="utf-8") == "été"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as handle:
            handle.write("half of the new")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_concurrent_writers_use_distinct_temporaries(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_open(target) as first, atomic_open(target) as second:
        assert first.name != second.name
        first.write("first")
        second.write("second")
    assert target.read_text() == "first"  # the outer block finishes last


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_honour_the_umask(tmp_path, mask, mode):
    import os

    old = os.umask(mask)
    try:
        path = write_text_atomic(tmp_path / f"table-{mask:o}.tex", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode


def test_atomic_dir_appears_whole_or_not_at_all(tmp_path):
    from mcbio.files import atomic_dir

    target = tmp_path / "tokenizer"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "a.json").write_text("{}")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(target) as tmp:
        (tmp / "a.json").write_text("1")
    with atomic_dir(target) as tmp:  # a second writer finishing later does not replace the first
        (tmp / "a.json").write_text("2")
    assert (target / "a.json").read_text() == "1" and [p.name for p in tmp_path.iterdir()] == ["tokenizer"]
