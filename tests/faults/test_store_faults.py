"""A results store after a fault: a writer killed mid-line, a damaged line, records of an unknown task.

Issue 25's rows: a torn last line is set aside (kept in a side file, named in one warning) and
every complete record is used, by the report and by a relaunch alike; a bad line elsewhere stops
with one line naming file and line; a task no registry knows is named in a warning.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from mcbio.config.loader import load_config
from mcbio.config.report import ReportRunConfig
from mcbio.pipelines.report import generate_report
from mcbio.results.records import ResultRecord, ResultStore, StoreError, read_records

REPO = Path(__file__).resolve().parents[2]
REPORT_YAML = REPO / "experiments" / "report" / "config.yaml"


def rec(task: str, seed: int, model: str = "base_clm_detour", value: float = 0.5) -> ResultRecord:
    return ResultRecord(model=model, task=task, seed=seed, metric="f1", value=value, config_hash="h", commit="c",
                        extra={"primary": True, "run": "r"})


def store_with(tmp_path: Path, records: list[ResultRecord], experiment: str = "main") -> tuple[ResultStore, Path]:
    store = ResultStore(tmp_path / "results")
    store.add(records, experiment)
    return store, store.records_dir / f"{experiment}.jsonl"


def tear(file: Path) -> bytes:
    """Append the first half of one more record, cut inside a two-byte character (a writer killed mid-line)."""
    line = json.dumps({"model": "é" * 40, "task": "diamed"}, ensure_ascii=False).encode("utf-8")
    cut = line.index("é".encode("utf-8")) + 41  # odd: inside a two-byte 'é'
    torn = line[:cut]
    with open(file, "ab") as handle:
        handle.write(torn)
    return torn


def side_files(file: Path) -> list[Path]:
    return sorted(file.parent.glob(f"{file.name}.torn-*"))


def report_config(store: ResultStore):
    return load_config(ReportRunConfig, REPORT_YAML, [f"results_dir={store.root}", "tracking.wandb=false"])


def warnings_of(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


# --------------------------------------------------------------------------- a torn last line


def test_torn_last_line_is_set_aside_and_every_complete_record_used(tmp_path, caplog):
    store, file = store_with(tmp_path, [rec("diamed", s) for s in (1, 2, 3)])
    complete = file.read_bytes()
    torn = tear(file)

    with caplog.at_level(logging.WARNING):
        records = store.records()

    assert sorted(r.seed for r in records) == [1, 2, 3]
    [side] = side_files(file)
    assert side.read_bytes() == torn
    assert file.read_bytes() == complete  # only complete lines are left in the store file
    [warning] = warnings_of(caplog, "torn last line")
    assert str(side) in warning and f"{file}:4" in warning and "\n" not in warning
    # The side file is no records file: nothing reads it as one.
    assert store.record_files() == [file]


def test_the_append_after_a_torn_line_leaves_a_valid_store(tmp_path):
    store, file = store_with(tmp_path, [rec("diamed", 1)])
    torn = tear(file)

    # The appender itself meets the torn line first (no read before it).
    assert store.add([rec("diamed", 2)], "main") == 1

    lines = file.read_bytes().splitlines(keepends=True)
    assert all(line.endswith(b"\n") for line in lines)
    assert [json.loads(line)["seed"] for line in lines] == [1, 2]
    assert side_files(file)[0].read_bytes() == torn
    assert sorted(r.seed for r in store.records()) == [1, 2]


def test_a_complete_last_line_without_its_newline_is_not_glued_to_the_next(tmp_path):
    store, file = store_with(tmp_path, [rec("diamed", 1)])
    file.write_bytes(file.read_bytes().rstrip(b"\n"))  # a hand edit dropped the final newline

    assert store.add([rec("diamed", 2)], "main") == 1

    assert sorted(r.seed for r in store.records()) == [1, 2]
    assert not side_files(file)


def test_a_relaunch_counts_the_complete_records_of_a_torn_store(tmp_path, caplog):
    """What a relaunch asks of the store for each element (``done_keys``) works on a torn file."""
    store, file = store_with(tmp_path, [rec("diamed", s) for s in (1, 2)])
    tear(file)

    with caplog.at_level(logging.WARNING):
        done = store.done_keys()

    assert {key[2] for key in done} == {1, 2}
    assert len(side_files(file)) == 1 and len(warnings_of(caplog, "torn last line")) == 1
    # Set aside once: a second look finds a sound file.
    caplog.clear()
    assert ResultStore(store.root).done_keys() == done
    assert len(side_files(file)) == 1 and not warnings_of(caplog, "torn last line")


def test_the_report_of_a_torn_store_warns_and_tables_the_complete_records(tmp_path, caplog):
    store, file = store_with(tmp_path, [rec("diamed", 1, value=0.7), rec("diamed", 2, value=0.9)])
    tear(file)

    with caplog.at_level(logging.WARNING):
        summary = generate_report(report_config(store))

    assert str(store.tables_dir / "repository_results.tex") in summary["tables"]
    assert "base\\_clm\\_detour" in (store.tables_dir / "repository_results.tex").read_text(encoding="utf-8")
    [side] = side_files(file)
    assert [str(side) in w for w in warnings_of(caplog, "torn last line")] == [True]


def test_a_torn_tail_in_a_file_read_outside_a_store_is_skipped_with_a_warning(tmp_path, caplog):
    _, file = store_with(tmp_path, [rec("diamed", 1)])
    tear(file)
    before = file.read_bytes()

    with caplog.at_level(logging.WARNING):
        assert [r.seed for r in read_records(file)] == [1]

    assert file.read_bytes() == before and not side_files(file)  # only the store, under its lock, moves it
    assert len(warnings_of(caplog, f"{file}:2")) == 1


# --------------------------------------------------------------------------- a bad line elsewhere


@pytest.fixture
def damaged_store(tmp_path) -> tuple[ResultStore, Path]:
    store, file = store_with(tmp_path, [rec("diamed", s) for s in (1, 2, 3)])
    lines = file.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[1] = lines[1][: len(lines[1]) // 2] + "\n"  # line 2 cut, yet followed by line 3: no torn tail
    file.write_text("".join(lines), encoding="utf-8")
    return store, file


def one_line_error(err: pytest.ExceptionInfo, file: Path, line_no: int) -> str:
    message = str(err.value)
    assert "\n" not in message and f"{file}:{line_no}" in message
    return message


@pytest.mark.parametrize("how", ["records", "done_keys", "add"])
def test_a_bad_middle_line_stops_with_one_line_naming_file_and_line(damaged_store, how):
    store, file = damaged_store
    before = file.read_bytes()
    with pytest.raises(StoreError) as err:
        {"records": store.records, "done_keys": store.done_keys,
         "add": lambda: store.add([rec("diamed", 4)], "main")}[how]()
    assert "invalid JSON" in one_line_error(err, file, 2)
    assert file.read_bytes() == before and not side_files(file)  # a damaged store is not repaired silently


def test_the_report_of_a_damaged_store_stops_with_one_line(damaged_store):
    store, file = damaged_store
    with pytest.raises(StoreError) as err:
        generate_report(report_config(store))
    one_line_error(err, file, 2)


def test_a_line_that_is_no_record_is_named_too(tmp_path):
    store, file = store_with(tmp_path, [rec("diamed", 1)])
    with open(file, "a", encoding="utf-8") as handle:
        handle.write('{"model": "m"}\n')
    with pytest.raises(StoreError) as err:
        store.records()
    assert "not a result record" in one_line_error(err, file, 2)
    with pytest.raises(StoreError) as err:
        store.add([rec("diamed", 2)], "main")
    one_line_error(err, file, 2)


# --------------------------------------------------------------------------- an unknown task


def test_records_of_an_unknown_task_are_named_once_in_a_warning(tmp_path, caplog):
    # Three seeds of a misspelt task in two experiments, beside a known one.
    store, main = store_with(tmp_path, [rec("quaero_emae", s) for s in (1, 2, 3)] + [rec("diamed", 1)])
    store.add([rec("quaero_emae", 1, model="other")], "second")

    with caplog.at_level(logging.WARNING):
        generate_report(report_config(store))

    [warning] = warnings_of(caplog, "not a registered task")
    assert "'quaero_emae'" in warning and str(main) in warning and str(store.records_dir / "second.jsonl") in warning
    assert "quaero_emea" in warning and "diamed" in warning  # the known tasks are listed
    assert "\n" not in warning


def test_the_paper_reference_records_raise_no_unknown_task_warning(tmp_path, caplog):
    """Their task names are the paper's table rows (``mean:6_tasks``, ``pretraining``...), not registry tasks."""
    store, _ = store_with(tmp_path, [rec(task, 1) for task in ("diamed", "quaero_emea", "morfitt", "mini_ner")])
    shutil.copytree(REPO / "results" / "reference", store.reference_dir)
    assert {r.task for r in store.reference_records()} - {"diamed"}  # they do hold such names

    with caplog.at_level(logging.WARNING):
        generate_report(report_config(store))

    assert not warnings_of(caplog, "not a registered task")
