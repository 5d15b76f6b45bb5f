"""Fine-tuning evaluation, one (model, task, seed) per array element.

Usage: python experiments/evaluate/launch.py model.path=/path/to/hf [tasks=[quaero_emea,morfitt]] [seeds=[42,43]] [key.sub=value ...]
"""

from pathlib import Path

from mcbio.cluster import launch
from mcbio.config.evaluation import EvaluateRunConfig
from mcbio.pipelines.evaluate import plan_evaluation

if __name__ == "__main__":
    raise SystemExit(launch(EvaluateRunConfig, Path(__file__).with_name("config.yaml"), plan_evaluation))
