"""Typed config of a study: the whole recipe as one plan, from raw text to the CLM-vs-MLM table.

A study chains the experiments the repository already has, each in its own folder under
the study's run directory, and wires their outputs together itself:

  base        a general-domain encoder pretrained (MLM) from scratch: tokenizer + model -> base/hf
  ontobook    ontology walks rephrased into textbooks                  -> ontobook/documents/
  curation    passages, overlap decontamination, mix and packing (base tokenizer) -> curation/shards
  <arm>       continued pretraining from base/hf on the shards, one run per arm; the arms
              differ only in their first phase (``arms``), the later phases are ``continued``'s
  evaluate    every (model, task, seed): the base model, each arm and (``report.random_init``) the
              base architecture with random weights
  report      the study's Table 4 (arms a vs b, base and random init beside), the power of the
              comparison, gain figure and compute line

So the study's sections carry what each step does, never where its inputs are: the
paths between steps are the study's own, and a section that would set one is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict

from mcbio.config.curation import CurationSettings
from mcbio.config.ontobook import OntobookSettings
from mcbio.config.schema import (
    EvaluationConfig,
    ModelConfig,
    PhaseConfig,
    PretrainDataConfig,
    RunConfig,
    TrainConfig,
)


@dataclass
class BaseEncoderConfig:
    """The general-domain base: its tokenizer is trained on ``data.corpus`` when ``model.tokenizer`` is null."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class ContinuedConfig:
    """What every arm shares: rows, batch, optimizer, seeds (hence data order) and the phases after phase 1.

    The arms start from the base export (architecture, tokenizer and weights) with the base's
    attention settings (``base.model``); they read the curated shards.
    """

    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class StudyReportConfig:
    """The study's table: arm ``a`` minus arm ``b`` per task, the base model and random init beside them."""

    enabled: bool = True
    a: str = "clm_detour"
    b: str = "mlm_control"
    # The published pair shown beside the study (reference records, Table 4's Base block).
    paper_a: str = "ModernCamemBERT-bio-base"
    paper_b: str = "ModernCamemBERT-bio-base-mlm-control"
    # Also fine-tune the base architecture and tokenizer from random weights (drawn from each
    # fine-tuning seed; records ``<study>-base-random-init``) on the same tasks, seeds and settings:
    # the table's floor, what pretraining adds. One more model: a quarter more fine-tuning runs.
    random_init: bool = True
    confidence: float = 0.95
    # Power at which the table states the minimal detectable a - b gap of the (task, seed) pairs.
    power: float = 0.8
    decimal_comma: bool = False


@dataclass
class StudyConfig(RunConfig):
    name: str = "study"
    base: BaseEncoderConfig = field(default_factory=BaseEncoderConfig)
    ontobook: OntobookSettings = field(default_factory=OntobookSettings)
    curation: CurationSettings = field(default_factory=CurationSettings)
    continued: ContinuedConfig = field(default_factory=ContinuedConfig)
    # Arm name -> its first phase; every later phase is ``continued.train.phases``.
    arms: Dict[str, PhaseConfig] = field(default_factory=dict)
    # Every model of the study (base, arms, random init) is fine-tuned on the same tasks and seeds.
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    report: StudyReportConfig = field(default_factory=StudyReportConfig)

    def check(self) -> None:
        from mcbio.config.loader import ConfigError
        from mcbio.config.schema import PretrainRunConfig

        if len(self.arms) < 2:
            raise ConfigError("'arms' needs at least two arms (e.g. clm_detour and mlm_control)")
        for key in ("a", "b"):
            if getattr(self.report, key) not in self.arms:
                raise ConfigError(f"'report.{key}' is {getattr(self.report, key)!r}, not an arm. Arms: {', '.join(self.arms)}")
        if self.report.a == self.report.b:
            raise ConfigError(f"'report.b' is 'report.a' ({self.report.a!r}): the table compares two different arms")
        if not 0 < self.report.confidence < 1:
            raise ConfigError(f"'report.confidence' is {self.report.confidence}: it must be in (0, 1)")
        if not 1 - self.report.confidence < self.report.power < 1:
            raise ConfigError(f"'report.power' is {self.report.power}: it must be in (1 - report.confidence, 1), "
                              "above the test's level")
        if "base" in self.arms:
            raise ConfigError("'arms.base': 'base' names the study's base model; choose another arm name")
        first = next(iter(self.arms))
        budget = ("tokens", "lr", "final_lr", "schedule", "warmup_tokens")
        for arm, phase in self.arms.items():
            for k in budget:
                if getattr(phase, k) != getattr(self.arms[first], k):
                    raise ConfigError(f"'arms.{arm}.{k}' is {getattr(phase, k)!r} but 'arms.{first}.{k}' is "
                                      f"{getattr(self.arms[first], k)!r}: the arms must share their budget and "
                                      "schedule and differ only in objective and masking")
        if "stable" in self.continued.train.phases:
            raise ConfigError("'continued.train.phases.stable': phase 1 is each arm's ('arms.<arm>'); "
                              "'continued.train.phases' holds the phases after it")
        for key, value in (("continued.data.corpus", self.continued.data.corpus),
                           ("continued.data.shards", self.continued.data.shards),
                           ("curation.pack.tokenizer", self.curation.pack.tokenizer)):
            if value:
                raise ConfigError(f"'{key}' is set, but the study wires it itself (the curated shards, the base "
                                  "tokenizer): remove it")
        for name, src in self.curation.sources.items():
            if src is not None and src.group == "ontobook":
                raise ConfigError(f"'curation.sources.{name}': the ontobook group is the study's own OntoBook "
                                  "output; remove this source")
        if self.base.model.init_from:
            raise ConfigError("'base.model.init_from': the study's base is trained from scratch")
        # Each component's own rules (phases, masking rates, batch arithmetic) at load time,
        # their messages naming the study's keys.
        for arm in self.arms:
            _prefixed("continued.", PretrainRunConfig(model=self.base.model, data=self.continued.data, stages=["pretrain"],
                                                      train=arm_train(self.continued.train, self.arms[arm])).check)
        _prefixed("base.", PretrainRunConfig(model=self.base.model, data=self.base.data, train=self.base.train,
                                             stages=["pretrain"]).check)
        self.evaluation.check_suite("evaluation.")
        _prefixed("curation.", lambda: CurationSettings.check(self.curation))
        _prefixed("ontobook.", lambda: OntobookSettings.check(self.ontobook))


def _prefixed(prefix: str, check) -> None:
    """Run ``check``; a ConfigError's first quoted key gets ``prefix`` (its section in the study)."""
    from mcbio.config.loader import ConfigError

    try:
        check()
    except ConfigError as err:
        raise ConfigError(str(err).replace("'", "'" + prefix, 1)) from None


def arm_train(shared: TrainConfig, first_phase: PhaseConfig) -> TrainConfig:
    """The arm's training: ``first_phase`` (as ``stable``), then the shared phases."""
    import dataclasses

    return dataclasses.replace(shared, phases={"stable": first_phase, **shared.phases})
