"""Regenerate every table and figure. Usage: python experiments/report/launch.py [key.sub=value ...]"""

from pathlib import Path

from mcbio.cluster import launch
from mcbio.config.report import ReportRunConfig
from mcbio.pipelines.report import plan_report

if __name__ == "__main__":
    raise SystemExit(launch(ReportRunConfig, Path(__file__).with_name("config.yaml"), plan_report))
