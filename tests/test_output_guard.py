"""The guard that keeps tests out of the checkout's runs/ and results/ sees every kind of change."""

import os

from tests.conftest import REPO, changed_outputs, snapshot_outputs


def test_created_changed_and_deleted_files_are_all_reported(tmp_path):
    root = tmp_path / "runs"
    (root / "a").mkdir(parents=True)
    (root / "a" / "kept.txt").write_text("same")
    (root / "a" / "edited.txt").write_text("old")
    (root / "gone.txt").write_text("x")
    before = snapshot_outputs([root])

    (root / "a" / "edited.txt").write_text("longer text")
    (root / "gone.txt").unlink()
    (root / "b").mkdir()
    (root / "b" / "new.json").write_text("{}")
    changes = changed_outputs(before, snapshot_outputs([root]))

    rel = lambda p: os.path.relpath(p, REPO)  # noqa: E731
    assert changes == sorted([f"~ {rel(root / 'a' / 'edited.txt')}", f"- {rel(root / 'gone.txt')}",
                              f"+ {rel(root / 'b')}", f"+ {rel(root / 'b' / 'new.json')}"],
                             key=lambda line: line[2:])
    assert changed_outputs(before, before) == []


def test_a_rewrite_of_the_same_size_is_seen_by_its_mtime(tmp_path):
    path = tmp_path / "results" / "t.tex"
    path.parent.mkdir()
    path.write_text("1.0")
    before = snapshot_outputs([path.parent])
    os.utime(path, ns=(0, before[str(path)][1] + 1_000_000))
    assert changed_outputs(before, snapshot_outputs([path.parent])) == [f"~ {os.path.relpath(path, REPO)}"]
