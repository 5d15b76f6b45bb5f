"""``python -m mcbio.results report [key=value ...]`` regenerates every table and figure;
``python -m mcbio.results ingest RUN_DIR EXPERIMENT [RESULTS_DIR]`` copies a run's records into the store."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from mcbio.config.loader import REPO_ROOT, ConfigError, load_config
from mcbio.results.records import ResultStore, read_records

REPORT_CONFIG = REPO_ROOT / "experiments" / "report" / "config.yaml"
USAGE = __doc__


def ingest_run(run_dir: str | Path, experiment: str, results_dir: str | Path = REPO_ROOT / "results") -> int:
    """Add ``<run_dir>/results/*.jsonl`` to ``records/<experiment>.jsonl`` (existing keys are skipped)."""
    folder = Path(run_dir) / "results"
    if not folder.is_dir():
        raise FileNotFoundError(f"no results folder in run directory {run_dir}")
    return ResultStore(results_dir).add(read_records(folder), experiment)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not argv or argv[0] not in ("report", "ingest"):
        print(USAGE, file=sys.stderr)
        return 2
    if argv[0] == "ingest":
        if len(argv) not in (3, 4):
            print(USAGE, file=sys.stderr)
            return 2
        print(f"{ingest_run(*argv[1:])} new record(s)")
        return 0
    from mcbio.config.report import ReportRunConfig
    from mcbio.pipelines.report import generate_report

    try:
        cfg = load_config(ReportRunConfig, REPORT_CONFIG, argv[1:])
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    summary = generate_report(cfg)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
