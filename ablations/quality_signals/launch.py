"""Ablation grid 'quality_signals' as one job array. Usage: python ablations/quality_signals/launch.py [key.sub=value ...]

Re-running it submits only the cells that have not finished (missing, failed or changed).
"""

from pathlib import Path

from mcbio.cluster import launch
from mcbio.config.grid import GridRunConfig
from mcbio.pipelines.grid import plan_grid

if __name__ == "__main__":
    raise SystemExit(launch(GridRunConfig, Path(__file__).with_name("grid.yaml"), plan_grid))
