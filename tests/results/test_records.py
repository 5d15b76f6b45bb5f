import json
import multiprocessing as mp

import pytest

from mcbio.results.records import (
    ResultRecord,
    ResultStore,
    git_commit,
    one_fingerprint_per_model,
    read_records,
    unique_records,
)


def _rec(model, task, seed, value=0.5, metric="f1", ts=None):
    kw = {} if ts is None else {"timestamp": ts}
    return ResultRecord(model=model, task=task, seed=seed, metric=metric, value=value, config_hash="h", commit="c", **kw)


def _writer(root, worker, n, barrier):
    store = ResultStore(root)
    for i in range(n):
        # All workers write the same shared record at the same moment: the store must keep one.
        barrier.wait()
        store.add([_rec(f"m{worker}", "t", i), _rec("shared", "t", i)], "exp")


def test_concurrent_store_writers_lose_and_duplicate_nothing(tmp_path, monkeypatch):
    import time

    import mcbio.results.records as records_module

    read_lines = records_module.iter_jsonl

    def slow_read(*args, **kwargs):
        yield from read_lines(*args, **kwargs)
        # Widen the window between reading the keys and appending: an unlocked store duplicates.
        time.sleep(0.002)

    monkeypatch.setattr(records_module, "iter_jsonl", slow_read)
    workers, n = 8, 40
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(workers)
    procs = [ctx.Process(target=_writer, args=(tmp_path, w, n, barrier)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    records = ResultStore(tmp_path).records("exp")
    keys = [r.key() for r in records]
    assert len(keys) == len(set(keys)) == workers * n + n
    assert {r.model for r in records} == {f"m{w}" for w in range(workers)} | {"shared"}


def test_done_keys_are_primary_records_of_every_file(tmp_path):
    store = ResultStore(tmp_path)
    primary = ResultRecord(model="m", task="t", seed=1, metric="f1", value=0.5, config_hash="h", commit="c",
                           extra={"primary": True})
    secondary = ResultRecord(model="m", task="t", seed=2, metric="f1", value=0.5, config_hash="h", commit="c")
    store.add([primary], "run_a")
    store.add([secondary], "run_b")
    assert store.done_keys() == {("m", "t", 1, "h", "test", None)}


def test_records_without_a_fingerprint_read_and_never_stand_for_a_fingerprinted_model(tmp_path):
    """A line written before fingerprints reads as "no fingerprint"; the same evaluation of
    fingerprinted weights is another done-key, and the store keeps both records."""
    store = ResultStore(tmp_path)
    old = {"model": "m", "task": "t", "seed": 1, "metric": "f1", "value": 0.4, "config_hash": "h", "commit": "c",
           "split": "test", "extra": {"primary": True, "run": "old"}, "timestamp": 1.0}
    store.records_dir.mkdir(parents=True)
    (store.records_dir / "study.jsonl").write_text(json.dumps(old) + "\n", encoding="utf-8")
    (rec,) = store.records()
    assert rec.model_fingerprint is None and rec.value == 0.4
    assert store.done_keys() == {("m", "t", 1, "h", "test", None)}
    new = ResultRecord(model="m", task="t", seed=1, metric="f1", value=0.6, config_hash="h", commit="c",
                       extra={"primary": True}, model_fingerprint="ab" * 32)
    assert store.add([new], "study") == 1  # not a duplicate of the old record
    assert store.add([new], "study") == 0
    assert store.done_keys() == {("m", "t", 1, "h", "test", None), ("m", "t", 1, "h", "test", "ab" * 32)}


def _fp_rec(model, fp, run, seed=1):
    return ResultRecord(model=model, task="t", seed=seed, metric="f1", value=0.5, config_hash="h", commit="c",
                        extra={"primary": True, "run": run}, model_fingerprint=fp)


def test_one_fingerprint_per_model_refuses_two_weights_under_one_name_unless_told_which_to_keep():
    old, new = "1" * 64, "2" * 64
    records = [_fp_rec("m", old, "run_2025"), _fp_rec("m", new, "run_2026"), _fp_rec("m", new, "rerun", seed=2),
               _fp_rec("other", None, "legacy")]
    with pytest.raises(ValueError) as err:
        one_fingerprint_per_model(records)
    message = str(err.value)
    assert "model 'm'" in message and "111111111111 (runs: run_2025)" in message
    assert "222222222222 (runs: rerun, run_2026)" in message and "keep_fingerprints.m=" in message
    kept = one_fingerprint_per_model(records, {"m": "2222"})
    assert [(r.model, r.extra["run"]) for r in kept] == [("m", "run_2026"), ("m", "rerun"), ("other", "legacy")]
    # One identity per model (None is one): unchanged.
    assert one_fingerprint_per_model(kept) == kept
    # Records without a fingerprint beside fingerprinted ones are two identities too; 'none' keeps them.
    mixed = [_fp_rec("m", None, "legacy"), _fp_rec("m", new, "run_2026")]
    with pytest.raises(ValueError, match=r"none \(runs: legacy\)"):
        one_fingerprint_per_model(mixed)
    assert [r.extra["run"] for r in one_fingerprint_per_model(mixed, {"m": "none"})] == ["legacy"]
    with pytest.raises(ValueError, match=r"keep_fingerprints.m='3' matches 0"):
        one_fingerprint_per_model(records, {"m": "3"})


def test_git_commit_outside_a_checkout_is_unknown(tmp_path):
    assert git_commit(tmp_path) == "unknown"
    assert len(git_commit()) >= 40  # this checkout


def test_store_add_skips_existing_keys(tmp_path):
    store = ResultStore(tmp_path)
    assert store.add([_rec("a", "t", 1, 0.1)], "e") == 1
    assert store.add([_rec("a", "t", 1, 0.9), _rec("a", "t", 2)], "e") == 1
    assert sorted((r.seed, r.value) for r in store.records("e")) == [(1, 0.1), (2, 0.5)]


def test_unique_records_latest_wins():
    recs = [_rec("a", "t", 1, 0.2, ts=2.0), _rec("a", "t", 1, 0.1, ts=1.0), _rec("a", "t", 2, 0.3, ts=0.0)]
    assert [(r.seed, r.value) for r in unique_records(recs)] == [(1, 0.2), (2, 0.3)]


def test_bad_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"model": "a"}\n', encoding="utf-8")
    import pytest

    with pytest.raises(ValueError, match=r"bad.jsonl:1"):
        read_records(path)
