"""Typed configuration: dataclass schemas, YAML files and dotlist overrides."""

from mcbio.config.loader import ConfigError, load_config, to_yaml
from mcbio.config.schema import (
    ClusterResources,
    EvaluationConfig,
    FinetuneConfig,
    ModelConfig,
    OptimizerConfig,
    PhaseConfig,
    PretrainDataConfig,
    PretrainRunConfig,
    ReportConfig,
    RunConfig,
    TrackingConfig,
    TrainConfig,
)

__all__ = [
    "ClusterResources",
    "ConfigError",
    "EvaluationConfig",
    "FinetuneConfig",
    "ModelConfig",
    "OptimizerConfig",
    "PhaseConfig",
    "PretrainDataConfig",
    "PretrainRunConfig",
    "ReportConfig",
    "RunConfig",
    "TrackingConfig",
    "TrainConfig",
    "load_config",
    "to_yaml",
]
