"""``python -m mcbio.results report [key=value ...]`` regenerates every table and figure from the results store.

Every launcher writes its records into the store (``results_dir``, default ``results``
in the working directory), so the report needs no other step."""

from __future__ import annotations

import json
import logging
import sys
from mcbio.config.loader import REPO_ROOT, ConfigError, load_config

REPORT_CONFIG = REPO_ROOT / "experiments" / "report" / "config.yaml"
USAGE = __doc__


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not argv or argv[0] != "report":
        print(USAGE, file=sys.stderr)
        return 2
    from mcbio.config.report import ReportRunConfig
    from mcbio.pipelines.report import generate_report

    try:
        # The experiment's YAML where the repository is at hand; the schema defaults otherwise.
        cfg = load_config(ReportRunConfig, REPORT_CONFIG if REPORT_CONFIG.is_file() else None, argv[1:])
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    summary = generate_report(cfg)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
