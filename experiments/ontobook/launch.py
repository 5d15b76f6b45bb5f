"""OntoBook synthetic textbooks. Usage: python experiments/ontobook/launch.py [key.sub=value ...]"""

from pathlib import Path

from mcbio.cluster import launch
from mcbio.config.ontobook import OntobookRunConfig
from mcbio.pipelines.ontobook import plan_ontobook

if __name__ == "__main__":
    raise SystemExit(launch(OntobookRunConfig, Path(__file__).with_name("config.yaml"), plan_ontobook))
