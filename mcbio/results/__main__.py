"""``python -m mcbio.results report [key=value ...]`` regenerates every table and figure from the results store;
``python -m mcbio.results reference [paper_dir=PATH] [results_dir=PATH] [--check]`` regenerates the reference
records (``<results_dir>/reference/*.jsonl``) from the paper's CSVs (``--check``: only report stale files).

Every launcher writes its records into the store (``results_dir``, default ``results``
in the working directory), so the report needs no other step."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from mcbio.config.loader import ConfigError, load_config

REPO_ROOT = Path(__file__).resolve().parents[2]
REPORT_CONFIG = REPO_ROOT / "experiments" / "report" / "config.yaml"
USAGE = __doc__


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not argv or argv[0] not in ("report", "reference"):
        print(USAGE, file=sys.stderr)
        return 2
    from mcbio.config.report import ReportRunConfig
    from mcbio.pipelines.report import generate_report

    check = "--check" in argv[1:]
    try:
        # The experiment's YAML where the repository is at hand; the schema defaults otherwise.
        cfg = load_config(ReportRunConfig, REPORT_CONFIG if REPORT_CONFIG.is_file() else None,
                          [a for a in argv[1:] if a != "--check"])
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    if argv[0] == "reference":
        return reference(cfg, check)
    summary = generate_report(cfg)
    print(json.dumps(summary, indent=1))
    return 0


def reference(cfg, check: bool = False) -> int:
    """Write (or, with ``check``, compare) ``<results_dir>/reference/*.jsonl`` from ``paper_dir``'s CSVs."""
    from mcbio.pipelines.report import paper_path, repo_path
    from mcbio.results.paper import stale_reference, write_reference

    paper_dir, out_dir = paper_path(cfg.paper_dir), repo_path(cfg.results_dir) / "reference"
    try:
        if check:
            stale = stale_reference(paper_dir, out_dir)
            print("\n".join(f"stale: {s}" for s in stale) or f"{out_dir}: up to date with {paper_dir}")
            return 1 if stale else 0
        for path in write_reference(paper_dir, out_dir):
            print(f"wrote {path}")
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from mcbio.errors import run_command

    raise SystemExit(run_command(main, sys.argv[1:]))
