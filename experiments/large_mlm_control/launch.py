"""MLM control, Large. Usage: python experiments/large_mlm_control/launch.py [key.sub=value ...]"""

from pathlib import Path

from mcbio.cluster import launch
from mcbio.config import PretrainRunConfig
from mcbio.pipelines.pretrain import plan_pretraining

if __name__ == "__main__":
    raise SystemExit(launch(PretrainRunConfig, Path(__file__).with_name("config.yaml"), plan_pretraining))
