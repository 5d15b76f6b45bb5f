"""Typed config of fine-tuning evaluation runs (``experiments/evaluate``, ``experiments/eval_baselines``).

One array element = one (model, task, seed): the launcher fills ``element`` in a copy of
the run config for each pending element and submits them all as one job array.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from mcbio.config.schema import FinetuneConfig, RunConfig


@dataclass
class EvalModelConfig:
    # Local HF folder (a run's ``hf/`` export, CamemBERT, DrBERT, ...): nothing is downloaded.
    path: Optional[str] = None
    # Name in the result records; None = the folder's name.
    name: Optional[str] = None


@dataclass
class EvalElementConfig:
    """Set by the launcher on each array element; empty on the run config itself."""

    model: str = ""
    task: str = ""
    seed: int = 0


@dataclass
class EvaluateRunConfig(RunConfig):
    name: str = "evaluate"
    # The model to evaluate (``model.path=...``); may be left empty when ``models`` is set.
    model: EvalModelConfig = field(default_factory=EvalModelConfig)
    # More models, keyed by record name (eval_baselines lists the paper's baselines here).
    models: Dict[str, EvalModelConfig] = field(default_factory=dict)
    tasks: List[str] = field(default_factory=lambda: ["quaero_emea", "quaero_medline", "morfitt"])
    seeds: List[int] = field(default_factory=lambda: list(range(42, 51)))
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    # Per-task overrides of ``finetune`` keys, e.g. ``{morfitt: {lr: 5.0e-5, epochs: 20}}``.
    task_finetune: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    # Tasks declared in YAML (keys of mcbio.evaluate.tasks.TaskSpec), inline or in files.
    custom_tasks: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    task_files: List[str] = field(default_factory=list)
    # Result store root (records go to ``<results_dir>/records/<name>.jsonl``); relative
    # paths are under the repository; None = ``<out_dir>/results``.
    results_dir: Optional[str] = "results"
    # A task whose data is absent: fail before submitting anything, or leave it out.
    skip_missing_tasks: bool = False
    # One array element per (model, task, seed); false = one job running them in turn.
    array: bool = True
    element: EvalElementConfig = field(default_factory=EvalElementConfig)

    def check(self) -> None:
        from dataclasses import fields

        from mcbio.config.loader import ConfigError

        if not self.tasks:
            raise ConfigError("'tasks' is empty: name at least one task")
        if not self.seeds:
            raise ConfigError("'seeds' is empty: name at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"'seeds' has duplicates: {self.seeds}")
        known = {f.name for f in fields(FinetuneConfig)}
        for task, overrides in self.task_finetune.items():
            bad = sorted(set(overrides) - known)
            if bad:
                raise ConfigError(f"unknown config key 'task_finetune.{task}.{bad[0]}'. Valid keys: {', '.join(sorted(known))}")
        ft = self.finetune
        if ft.long_inputs == "sliding_window" and ft.window_stride >= min(ft.max_length, ft.max_length_multilabel) - 2:
            raise ConfigError("'finetune.window_stride' (tokens shared by consecutive windows) must be smaller than "
                              "'finetune.max_length' and 'finetune.max_length_multilabel'")
