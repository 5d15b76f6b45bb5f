"""The laptop study: base encoder -> curation -> CLM detour vs MLM control -> evaluation -> Table 4.

Usage: python experiments/laptop_study/launch.py [preset=smoke] [cluster=slurm resources.profile=local_slurm] [key=value ...]
"""

from pathlib import Path

from mcbio.cluster import launch
from mcbio.config.study import StudyConfig
from mcbio.pipelines.study import plan_study

if __name__ == "__main__":
    raise SystemExit(launch(StudyConfig, Path(__file__).with_name("config.yaml"), plan_study))
