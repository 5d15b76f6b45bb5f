"""Regenerate every table and figure. Usage: python experiments/report/launch.py [key.sub=value ...]"""

from pathlib import Path

from mcbio.cluster import launch
from mcbio.config.report import ReportRunConfig

if __name__ == "__main__":
    raise SystemExit(launch(ReportRunConfig, "mcbio.pipelines.report:generate_report", Path(__file__).with_name("config.yaml")))
