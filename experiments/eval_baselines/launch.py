"""The paper's baselines on the evaluation tasks (fill the local model paths in config.yaml first).

Usage: python experiments/eval_baselines/launch.py [models.drbert.path=/path/to/DrBERT-7GB] [key.sub=value ...]
"""

from pathlib import Path

from mcbio.cluster import launch
from mcbio.config.evaluation import EvaluateRunConfig
from mcbio.pipelines.evaluate import plan_evaluation

if __name__ == "__main__":
    raise SystemExit(launch(EvaluateRunConfig, Path(__file__).with_name("config.yaml"), plan_evaluation))
