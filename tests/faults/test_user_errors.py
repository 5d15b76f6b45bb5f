"""User errors end a command with one line naming the file, key or line; ``--debug`` or MCBIO_DEBUG brings the traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mcbio.errors import UserError, run_command, split_debug
from tests.conftest import REPO

EVALUATE = REPO / "experiments" / "evaluate" / "launch.py"


def store_with_a_bad_middle_line(root):
    records = root / "records"
    records.mkdir(parents=True)
    path = records / "someone.jsonl"
    from dataclasses import asdict

    from mcbio.results.records import ResultRecord

    good = json.dumps(asdict(ResultRecord(model="m", task="t", seed=1, metric="f1", value=0.5, config_hash="h",
                                          commit="c")))
    path.write_text(good + "\n{not json\n" + good + "\n")
    return path


def command(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "MCBIO_DEBUG": "", **(env or {})})


def test_a_launch_over_a_store_with_a_bad_line_prints_one_line_naming_file_and_line(tmp_path, tiny_hf_dir):
    bad = store_with_a_bad_middle_line(tmp_path / "results")
    args = [str(EVALUATE), "preset=smoke", f"model.path={tiny_hf_dir}", "model.name=tiny", "tasks=[mini_ner]",
            f"results_dir={tmp_path / 'results'}", f"out_dir={tmp_path / 'run'}", "dry_run=true"]
    proc = command(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    (line, hint) = [l for l in proc.stderr.splitlines() if l.strip()][-2:]
    assert line.startswith("error: ") and f"{bad}:2" in line, proc.stderr
    assert "--debug" in hint and "MCBIO_DEBUG=1" in hint
    # The traceback, when asked for: by flag or by environment.
    for debug in (command(*args, "--debug"), command(*args, env={"MCBIO_DEBUG": "1"})):
        assert debug.returncode != 0 and "Traceback" in debug.stderr and "StoreError" in debug.stderr


def test_the_report_command_prints_one_line_for_a_bad_store_line(tmp_path):
    bad = store_with_a_bad_middle_line(tmp_path / "results")
    proc = command("-m", "mcbio.results", "report", f"results_dir={tmp_path / 'results'}",
                   f"out_dir={tmp_path / 'run'}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert any(l.startswith("error: ") and f"{bad}:2" in l for l in proc.stderr.splitlines()), proc.stderr


def test_an_unreadable_file_is_named_in_one_line(capsys):
    def main(argv):
        open(argv[0], encoding="utf-8").read()
        return 0

    assert run_command(main, ["/nonexistent/config.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "error: No such file or directory: /nonexistent/config.yaml"
    with pytest.raises(FileNotFoundError):
        run_command(main, ["/nonexistent/config.yaml", "--debug"])


def test_a_program_bug_is_never_hidden_as_a_user_error():
    def main(argv):
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        run_command(main, [])
    assert issubclass(__import__("mcbio.config.loader", fromlist=["ConfigError"]).ConfigError, UserError)


def test_the_debug_flag_is_taken_out_of_the_overrides(monkeypatch):
    monkeypatch.delenv("MCBIO_DEBUG", raising=False)
    assert split_debug(["a=1", "--debug", "b=2"]) == (True, ["a=1", "b=2"])
    assert split_debug(["a=1"]) == (False, ["a=1"])
    monkeypatch.setenv("MCBIO_DEBUG", "0")
    assert split_debug([])[0] is False
    monkeypatch.setenv("MCBIO_DEBUG", "1")
    assert split_debug([])[0] is True
