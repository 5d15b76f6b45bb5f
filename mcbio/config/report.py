"""Typed config of the report: which records feed which table, and the carbon constants."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from mcbio.config.schema import RunConfig
from mcbio.llm.config import LLMConfig


@dataclass
class CarbonConfig:
    """Table 5 constants: H100 SXM TDP, data-centre PUE, grid intensity (France, g CO2eq/kWh)."""

    tdp_w: float = 700.0
    pue: float = 1.2
    grid_g_per_kwh: float = 34.0


PAPER_TASK_ORDER = ["diamed", "fracco_30", "fracco_100", "cantemist", "distemist", "meddialog_fr",
                    "quaero_emea", "quaero_medline"]


@dataclass
class ModelPair:
    """Two models compared task by task, ``a - b`` (CLM detour minus MLM control): this repository's
    record names (``a``, ``b``) and the published ones (``paper_a``, ``paper_b``, reference records)."""

    label: str = ""
    a: str = ""
    b: str = ""
    paper_a: str = ""
    paper_b: str = ""


@dataclass
class StudyTable:
    """A study's Table 4 (``tables/table4_<experiment>.tex``) and gain figure (``figures/gain_<experiment>``):
    arm ``a`` minus arm ``b`` per task, the ``base`` model and the random-init floor beside them, the
    published pair beside that; under it the paired tests and the power of the (task, seed) comparison."""

    # The study's records file (records/<experiment>.jsonl).
    experiment: str = ""
    # Record names of the two arms and of the base model.
    a: str = ""
    b: str = ""
    base: str = ""
    # Record name of the base architecture fine-tuned from random weights (``<base>-random-init``):
    # its column is the table's floor and the notes give each model's gain over it. Empty: no column.
    random_init: str = ""
    label_a: str = "CLM detour"
    label_b: str = "MLM control"
    label_base: str = "base"
    label_random_init: str = "random init"
    # The minimal detectable effect under the table is the smallest true mean a - b gap over the
    # (task, seed) pairs that the paired t-test (at 1 - the report's confidence) detects with this power.
    power: float = 0.8
    paper_a: str = "ModernCamemBERT-bio-base"
    paper_b: str = "ModernCamemBERT-bio-base-mlm-control"
    tasks: List[str] = field(default_factory=lambda: ["quaero_emea", "quaero_medline", "morfitt"])


@dataclass
class MainTableConfig:
    """Table 3: the paper's models and tasks, each model's "this repository" column beside it."""

    # Published models (reference record names), in the paper's column order.
    paper_models: List[str] = field(default_factory=lambda: [
        "ModernCamemBERT-bio-base", "ModernCamemBERT-bio-large", "ModernCamemBERT", "CamemBERT-bio", "CamemBERT",
        "DrBERT"])
    # Published model -> this repository's record name (experiments/evaluate, eval_baselines).
    repo_models: Dict[str, str] = field(default_factory=lambda: {
        "ModernCamemBERT-bio-base": "base_clm_detour", "ModernCamemBERT-bio-large": "large_clm_detour",
        "ModernCamemBERT": "moderncamembert", "CamemBERT-bio": "camembert_bio", "CamemBERT": "camembert",
        "DrBERT": "drbert"})
    # Task order (registry names): the paper's.
    tasks: List[str] = field(default_factory=lambda: list(PAPER_TASK_ORDER))


@dataclass
class LengthStatsConfig:
    """Table 6 computed here: the test documents of each task whose data is at hand, per tokenizer."""

    # Tasks tried in order; those whose data is missing are left out (listed in the summary).
    tasks: List[str] = field(default_factory=lambda: ["diamed", "meddialog_fr", "quaero_emea", "quaero_medline",
                                                      "fracco_100"])
    # Tokenizer label -> local tokenizer folder (e.g. {moderncamembert: /models/moderncamembert-base}).
    tokenizers: Dict[str, str] = field(default_factory=dict)
    split: str = "test"
    # The context of 512-token models: the table reports the share of documents above it.
    threshold: int = 512


@dataclass
class LayerChangeConfig:
    enabled: bool = False
    # HF folder of the starting checkpoint (e.g. ModernCamemBERT-base).
    start: Optional[str] = None
    # Run label -> HF folders at the end of each phase, in order (e.g. clm: [end_phase1, end_phase2]).
    runs: Dict[str, List[str]] = field(default_factory=dict)
    # A UTF-8 text file, one passage per line; None = the first passages of the sample corpus.
    texts: Optional[str] = None
    max_texts: int = 32
    max_length: int = 256
    seed: int = 0


@dataclass
class AppendixFidelityConfig:
    """Table 8 measured beside the paper's: a real LLM extracts passages from the paper's appendix-E
    source texts with the curation's own prompt and parser (the report launcher's first element,
    :mod:`mcbio.pipelines.fidelity`); the report reads ``<results_dir>/fidelity/appendix_e.json``."""

    # The extraction LLM; null = not measured (the report uses the file already in the store, if any).
    llm: Optional[LLMConfig] = None
    prompt: str = "curation_extract"
    max_passage_words: int = 600


@dataclass
class ReportRunConfig(RunConfig):
    """Regenerate every table and figure under ``<results_dir>/tables`` and ``figures``."""

    name: str = "report"
    # The results store (relative paths are from the repository root): records/ (this
    # repository's runs), runs/ (pretraining compute), reference/ (the paper's numbers).
    results_dir: str = "results"
    # The paper's tables as CSV (``python -m mcbio.results reference`` turns them into
    # reference/*.jsonl) and its appendix-E fidelity examples; relative to the repository.
    paper_dir: str = "${oc.env:MCBIO_PAPER,../shared/paper}"
    # Experiments (records/<name>.jsonl) feeding the main, CLM/MLM and gain views; empty = all.
    experiments: List[str] = field(default_factory=list)
    # Model -> fingerprint prefix (``none``: the records without one) to keep when a model name
    # has records of several weights (a model retrained under the same name); without it such
    # a model stops the report, naming its fingerprints and their runs.
    keep_fingerprints: Dict[str, str] = field(default_factory=dict)
    # Table 1: table name -> ablation grid name (its records/<grid>.jsonl).
    ablation_grids: Dict[str, str] = field(default_factory=dict)
    main: MainTableConfig = field(default_factory=MainTableConfig)
    # Table 4: one block per pair (Base, Large).
    clm_vs_mlm: List[ModelPair] = field(default_factory=lambda: [
        ModelPair("Base", "base_clm_detour", "base_mlm_control", "ModernCamemBERT-bio-base",
                  "ModernCamemBERT-bio-base-mlm-control"),
        ModelPair("Large", "large_clm_detour", "large_mlm_control", "ModernCamemBERT-bio-large",
                  "ModernCamemBERT-bio-large-mlm-control")])
    # Figure 2: per-task gain a - b (published, and this repository's when its records exist).
    gain: ModelPair = field(default_factory=lambda: ModelPair(
        "Base", "base_clm_detour", "base_mlm_control", "ModernCamemBERT-bio-base", "ModernCamemBERT-bio-base-mlm-control"))
    # Studies (experiments/laptop_study...): one table and gain figure each.
    studies: List[StudyTable] = field(default_factory=list)
    carbon: CarbonConfig = field(default_factory=CarbonConfig)
    lengths: LengthStatsConfig = field(default_factory=LengthStatsConfig)
    # JSON written by the curation pipeline (fidelity scores, mix tokens, upsampling counts).
    curation_stats: Optional[str] = None
    fidelity: AppendixFidelityConfig = field(default_factory=AppendixFidelityConfig)
    layer_change: LayerChangeConfig = field(default_factory=LayerChangeConfig)
    # Only each task's paper metric (records with extra.primary); false = every metric.
    primary_only: bool = True
    scale: float = 100.0
    decimals: int = 1
    decimal_comma: bool = False
    confidence: float = 0.95

    def check(self) -> None:
        from mcbio.config.loader import ConfigError

        if not 0 < self.confidence < 1:
            raise ConfigError("'confidence' must be in (0, 1)")
        for i, study in enumerate(self.studies):
            for key in ("experiment", "a", "b", "base"):
                if not getattr(study, key):
                    raise ConfigError(f"'studies.{i}.{key}' is not set")
            if not study.tasks:
                raise ConfigError(f"'studies.{i}.tasks' is empty")
            if not 1 - self.confidence < study.power < 1:
                raise ConfigError(f"'studies.{i}.power' is {study.power}: it must be in (1 - confidence, 1)")
        for i, pair in enumerate(self.clm_vs_mlm):
            if not pair.paper_a or not pair.paper_b:
                raise ConfigError(f"'clm_vs_mlm[{i}]' needs both 'paper_a' and 'paper_b' (published model names)")
