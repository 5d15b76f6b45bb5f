"""biomed-fr-v2 curation. Usage: python experiments/curation/launch.py [key.sub=value ...]"""

from pathlib import Path

from mcbio.cluster import launch
from mcbio.config.curation import CurationRunConfig
from mcbio.pipelines.curation import plan_curation

if __name__ == "__main__":
    raise SystemExit(launch(CurationRunConfig, Path(__file__).with_name("config.yaml"), plan_curation))
