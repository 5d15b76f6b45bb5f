"""Typed config of fine-tuning evaluation runs (``experiments/evaluate``, ``experiments/eval_baselines``).

One array element = one (model, task, seed). The planner (:mod:`mcbio.pipelines.evaluate`)
builds an :class:`EvalElementConfig` for each: the narrow config the job runs on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

from mcbio.config.schema import EvalSuiteConfig, FinetuneConfig, RunConfig, TrackingConfig
from mcbio.evaluate.tasks import TaskSpec


@dataclass
class EvalModelConfig:
    # Local HF folder (a run's ``hf/`` export, CamemBERT, DrBERT, ...): nothing is downloaded.
    path: Optional[str] = None
    # Name in the result records. None is allowed only for a run's own export
    # (``<run>/hf``, which names its run); any other model must be named.
    name: Optional[str] = None
    # pretrained = the checkpoint's weights; random = the same architecture (``path``'s
    # config.json, and its tokenizer) with weights initialised from the fine-tuning seed:
    # the random-init baseline of an ablation. Nothing is downloaded either way.
    # (Same metadata as mcbio.config.schema.choice, which the loader validates.)
    init: str = field(default="pretrained", metadata={"choices": ("pretrained", "random")})


@dataclass
class EvalElementConfig:
    """Everything one (model, task, seed) fine-tuning job needs, built by the planner."""

    model_name: str
    model_path: str
    model_init: str
    task: TaskSpec
    seed: int
    finetune: FinetuneConfig
    shared_data: Optional[str]
    # The results store (absolute) and the records file in it (``records/<experiment>.jsonl``).
    results_dir: str
    experiment: str
    # What the element computes, seed apart: the store's done-key uses it.
    settings_hash: str
    # Where the element's W&B run and hyper-parameter search cache go.
    out_dir: str
    run_name: str
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    # Added to every record's ``extra`` (a grid cell's ``grid`` and ``cell``).
    record_tags: Dict[str, str] = field(default_factory=dict)


@dataclass
class EvaluateRunConfig(RunConfig, EvalSuiteConfig):
    """Fine-tune one or more local models on a suite of tasks; ``resources`` is what one element needs."""

    name: str = "evaluate"
    # The model to evaluate (``model.path=...``); may be left empty when ``models`` is set.
    model: EvalModelConfig = field(default_factory=EvalModelConfig)
    # More models, keyed by record name (eval_baselines lists the paper's baselines here).
    models: Dict[str, EvalModelConfig] = field(default_factory=dict)

    def check(self) -> None:
        self.check_suite()
