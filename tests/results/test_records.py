import multiprocessing as mp

from mcbio.results.records import ResultRecord, ResultStore, git_commit, read_records, unique_records


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

    def slow_read(file):
        yield from read_lines(file)
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
    assert store.done_keys() == {("m", "t", 1, "h", "test")}


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
