"""MLM control, Base. Usage: python experiments/base_mlm_control/launch.py [key.sub=value ...]"""

from pathlib import Path

from mcbio.cluster import launch
from mcbio.config import PretrainRunConfig

if __name__ == "__main__":
    raise SystemExit(launch(PretrainRunConfig, "mcbio.pipelines.pretrain:run_pretraining_experiment", Path(__file__).with_name("config.yaml")))
