"""Typed configuration schemas.

Every number of the recipe lives here with the paper's default;
experiment YAML files and dotlist overrides change them, code never hard-codes them.
Fields whose value must be one of a fixed set carry ``metadata={"choices": ...}``;
:func:`mcbio.config.loader.validate` checks them with the full key path.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


def choice(default: Any, *choices: Any) -> Any:
    return field(default=default, metadata={"choices": choices})


# --------------------------------------------------------------------------- run-wide


@dataclass
class ClusterResources:
    """What one job asks the scheduler for. Profiles (``slurm/profiles/<name>.yaml``, or ``$MCBIO_PROFILES``) fill it.

    How each key becomes an sbatch option, and how to write a profile for another cluster:
    ``slurm/README.md``.
    """

    profile: str = "local"
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    nodes: int = 1
    gpus_per_node: int = 0
    # One task per GPU: each task is one Composer rank (see mcbio.cluster.distributed).
    tasks_per_node: int = 1
    cpus_per_task: int = 2
    mem_gb: Optional[int] = None
    # Minutes; rounded up to whole minutes for Slurm.
    timeout_min: float = 60
    # Seconds before the time limit at which Slurm signals the job so it can checkpoint.
    signal_delay_s: int = 120
    # How many timeouts/preemptions submitit requeues before giving up.
    max_requeues: int = 3
    array_parallelism: int = 8
    # Shell lines run before the job on the node (module load, conda activate, exports).
    setup: List[str] = field(default_factory=list)
    additional_parameters: Dict[str, Any] = field(default_factory=dict)


@dataclass
class JobNeeds:
    """What one element of a stage needs; unset (null) keys take the cluster profile's value."""

    gpus_per_node: Optional[int] = None
    tasks_per_node: Optional[int] = None
    cpus_per_task: Optional[int] = None
    mem_gb: Optional[int] = None
    # Minutes.
    timeout_min: Optional[float] = None


@dataclass
class TrackingConfig:
    wandb: bool = True
    project: str = "mcbio"
    entity: Optional[str] = None
    mode: str = choice("offline", "offline", "online", "disabled")
    group: Optional[str] = None
    tags: List[str] = field(default_factory=list)


@dataclass
class PathsConfig:
    # Root of the public French biomedical data (QUAERO, MORFITT, E3C, ontologies).
    shared_data: Optional[str] = "${oc.env:MCBIO_DATA,null}"
    # Where runs go when ``out_dir`` is not given: ``<runs_root>/<name>[-<preset>]``.
    runs_root: str = "runs"


@dataclass
class RunConfig:
    """Keys every experiment has."""

    name: str = "unnamed"
    out_dir: Optional[str] = None
    preset: Optional[str] = None
    dry_run: bool = False
    # ``auto`` picks Slurm when ``sbatch`` is on PATH, else submitit's local executor.
    cluster: str = choice("auto", "auto", "local", "slurm")
    # Wait for the job and print its result (local runs always wait).
    wait: bool = True
    resources: ClusterResources = field(default_factory=ClusterResources)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)


# --------------------------------------------------------------------------- model


@dataclass
class ModelConfig:
    """ModernBERT architecture (ModernCamemBERT Base by default)."""

    # Local Hugging Face checkpoint to start from (ModernCamemBERT, CamemBERT...); None = random init.
    init_from: Optional[str] = None
    # Local tokenizer folder; None = use init_from's, else train a BPE tokenizer on the corpus.
    tokenizer: Optional[str] = None
    vocab_size: int = 32768
    hidden_size: int = 768
    num_hidden_layers: int = 22
    num_attention_heads: int = 12
    intermediate_size: int = 1152
    max_position_embeddings: int = 8192
    global_rope_theta: float = 160000.0
    local_rope_theta: float = 10000.0
    local_attention: int = 128
    global_attn_every_n_layers: int = 3
    # Attention backend (see mcbio/model/attention.py): sdpa / eager (transformers'), flash_attention_2
    # (unpadded varlen, needs the flash_attn package: the gpu extra), flex_attention (torch's
    # FlexAttention, no extra package; compiled on CUDA). All apply the same masks and windows.
    attn_implementation: str = choice("sdpa", "sdpa", "eager", "flash_attention_2", "flex_attention")
    # Kernel behind flash_attention_2: ``flash_attn`` (the CUDA package; a configuration error
    # where it cannot be imported) or ``reference`` (plain torch, any device, slow: tests and
    # CPU checks of the FlashAttention-2 path; never chosen implicitly).
    flash_attention_kernel: str = choice("flash_attn", "flash_attn", "reference")
    # How the 128-token local window behaves under causal attention:
    # ``half``: the left half of the bidirectional window (64 tokens back), same receptive
    # field per side as MLM; ``full``: 128 tokens back.
    causal_local_window: str = choice("half", "half", "full")
    # Packed documents never attend across their boundaries (both objectives). false = one
    # segment per row on every backend: documents of a row see each other, positions run across the row.
    document_masking: bool = True


# --------------------------------------------------------------------------- data


@dataclass
class PretrainDataConfig:
    # JSONL file/folder or plain-text folder; None = the sample corpus shipped in mcbio/resources.
    corpus: Optional[str] = None
    # Pre-tokenised packed shards from the curation pipeline; when set, ``corpus`` is not read.
    shards: Optional[str] = None
    seq_len: int = 8192
    # Cap on documents read from ``corpus`` (None = all).
    max_documents: Optional[int] = None
    # Documents used to train the BPE tokenizer when none is given (None = all).
    tokenizer_train_max_documents: Optional[int] = None
    # A document that does not fit what is left of a row is split, never truncated. The row
    # may end up to this many tokens early (as padding) so that the cut falls at a paragraph
    # or sentence end; 0 = strict no-padding packing, cuts exactly at row ends. 64 of 8192
    # is at most 0.8 % padding per row (the packing stats report the measured fraction).
    max_split_padding: int = 64
    # Rows per shard file when packing ``corpus`` (4096 x 8192 uint16 x 2 = 128 MiB).
    sequences_per_shard: int = 4096
    # Data-loader worker processes per rank (rows are memory-mapped, workers only copy them).
    num_workers: int = 0


# --------------------------------------------------------------------------- training


@dataclass
class OptimizerConfig:
    """Composer's DecoupledAdamW. The learning rate is each phase's (``train.phases.<name>.lr``)."""

    betas: List[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1.0e-6
    # Decoupled weight decay (Loshchilov & Hutter), against the phase LR: each step multiplies
    # the decayed weights by 1 - weight_decay * lr_t / phase lr, i.e. weight_decay per step at the
    # phase's peak LR, following the schedule's warmup and decay (Composer's convention).
    weight_decay: float = 1.0e-5
    # Biases and normalisation weights get no weight decay.
    exclude_bias_and_norm: bool = True


@dataclass
class PhaseConfig:
    objective: str = choice("mlm", "clm", "mlm")
    # Share of tokens masked (MLM only; must be 0 for CLM).
    mlm_probability: float = 0.15
    tokens: int = 1_000_000_000
    schedule: str = choice("constant", "constant", "one_minus_sqrt", "linear")
    # Peak LR of the phase (the only LR key: batch b trains at the schedule's value for b) and
    # the reference of decoupled weight decay; the schedule restarts at each phase, the
    # optimizer state does not.
    lr: float = 2.0e-4
    # LR reached at the end of a decaying schedule.
    final_lr: float = 2.0e-5
    warmup_tokens: int = 0
    # Layer indices frozen during this phase, as ranges "0-7" or single indices "11".
    frozen_layers: List[str] = field(default_factory=list)


@dataclass
class CheckpointConfig:
    # Composer time string: "500ba", "1ep", ...
    save_interval: str = "1000ba"
    save_num_checkpoints_to_keep: int = 3


@dataclass
class TrainConfig:
    # Global batch in sequences of ``data.seq_len`` tokens (384 x 8192 ~ 3.1M tokens/step).
    global_batch_size: int = 384
    # Sequences per device per forward pass; gradient accumulation is derived from it.
    device_microbatch_size: int = 8
    # amp_bf16 on GPU; CPU runs fall back to fp32.
    precision: str = choice("amp_bf16", "amp_bf16", "fp32", "amp_fp16")
    seed: int = 17
    # Shared by the CLM run and its MLM control so both see the same data order.
    data_seed: int = 42
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    # Ordered phases (YAML mapping order). Named so presets can override one phase's keys.
    phases: Dict[str, PhaseConfig] = field(default_factory=dict)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    parallelism: str = choice("ddp", "ddp", "fsdp")
    log_interval: str = "1ba"
    # Show Composer's progress bars.
    progress_bar: bool = True


# --------------------------------------------------------------------------- evaluation


@dataclass
class HpSearchConfig:
    """Optional small grid searched on the validation split (DoctoBERT's protocol).

    Empty lists keep the FinetuneConfig value; with any list set, every combination is
    trained with the first seed, the best validation score picks the values, and every
    seed is then trained with them.
    """

    lr: List[float] = field(default_factory=list)
    batch_size: List[int] = field(default_factory=list)
    warmup_ratio: List[float] = field(default_factory=list)
    # Epochs per search trial (None = ``epochs``).
    epochs: Optional[int] = None
    # Seed of every trial, so that each array element finds the same values (and reuses
    # the cached search of the first element that finished it).
    seed: int = 42

    def check(self, prefix: str = "hp_search.") -> None:
        """Every grid value in range (as :meth:`FinetuneConfig.check` for the key it replaces)."""
        for key in ("lr", "batch_size", "warmup_ratio"):
            for i, value in enumerate(getattr(self, key)):
                require_range(f"{prefix}{key}[{i}]", value, *FINETUNE_RANGES[key])
        if self.epochs is not None:
            require_range(f"{prefix}epochs", self.epochs, *FINETUNE_RANGES["epochs"])


@dataclass
class FinetuneConfig:
    """The authors' fine-tuning harness defaults."""

    epochs: int = 15
    lr: float = 2.0e-5
    batch_size: int = 4
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    # Input length: by default (null) the model's own context, from its config and tokenizer
    # (8192 for ModernBERT, 512 for CamemBERT-like models), as in the paper's Table 3 and the
    # authors' harness (its tokenizer call passes truncation=True and no length). A value is
    # an explicit cap (NER and single-label tasks; multi-label tasks), never above the context.
    # The length used is recorded in every result record (extra.max_length).
    max_length: Optional[int] = None
    max_length_multilabel: Optional[int] = None
    # Override of the model's context (None = read from its config and tokenizer).
    max_context: Optional[int] = None
    dropout: float = 0.1
    # Stop when the validation metric has not improved for this many epochs (None = never).
    early_stopping_patience: Optional[int] = 3
    # BCE positive weights = negatives / positives per label (multi-label tasks).
    pos_weight: bool = True
    # Multi-label decision threshold on sigmoid outputs.
    threshold: float = 0.5
    # Inputs longer than the model's context: cut (as in the paper) or overlapping windows.
    long_inputs: str = choice("truncate", "truncate", "sliding_window")
    # Tokens shared by consecutive windows (sliding_window only).
    window_stride: int = 256
    # How window predictions of one example are combined (classification logits).
    window_aggregation: str = choice("mean", "mean", "max")
    # Batches of similar length (see mcbio.evaluate.batching); false = random batches.
    length_bucketing: bool = True
    bucket_batches: int = 50
    eval_batch_size: int = 16
    # auto = bf16 autocast on GPU, fp32 on CPU.
    precision: str = choice("auto", "auto", "fp32", "bf16")
    # Caps on examples (None = all); smoke runs and CI use them to stay fast.
    max_train_examples: Optional[int] = None
    max_eval_examples: Optional[int] = None
    hp_search: HpSearchConfig = field(default_factory=HpSearchConfig)

    def check(self, prefix: str = "finetune.") -> None:
        """Every size and rate in range, so that a wrong value stops the launch naming its key
        instead of failing in the job (batch_size=0) or training something meaningless that is
        then recorded as a result (epochs=0: an untrained model's score). Null keys are unset
        (no cap, the model's context, no early stopping)."""
        for key, (test, rule) in FINETUNE_RANGES.items():
            value = getattr(self, key)
            if value is not None or key not in NULLABLE_FINETUNE_KEYS:
                require_range(prefix + key, value, test, rule)
        cap = self.max_length
        if self.long_inputs == "sliding_window" and cap is not None and self.window_stride >= cap - 2:
            from mcbio.config.loader import ConfigError

            raise ConfigError(f"'{prefix}window_stride' ({self.window_stride}) must be smaller than "
                              f"'{prefix}max_length' - 2 ({cap - 2}): windows would not move forward")
        self.hp_search.check(f"{prefix}hp_search.")

    def merged(self, overrides: Dict[str, Any], key: str) -> "FinetuneConfig":
        """This config with ``overrides`` merged in, typed and checked; errors name ``key``
        (``task_finetune.<task>``)."""
        from omegaconf import OmegaConf

        from mcbio.config.loader import ConfigError

        try:
            merged = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(self), overrides))
        except Exception as err:
            raise ConfigError(f"{key}: {err}".splitlines()[0]) from None
        merged.check(f"{key}.")
        return merged  # type: ignore[return-value]


# Allowed values of the FinetuneConfig numbers: (test, the rule in words).
FINETUNE_RANGES: Dict[str, tuple] = {
    "epochs": (lambda v: v >= 1, ">= 1"),
    "lr": (lambda v: v > 0, "> 0"),
    "batch_size": (lambda v: v >= 1, ">= 1"),
    "warmup_ratio": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    # [CLS], at least one token, [SEP].
    "max_length": (lambda v: v >= 3, "null (the model's context) or >= 3"),
    "max_length_multilabel": (lambda v: v >= 3, "null (the model's context) or >= 3"),
    "max_context": (lambda v: v >= 3, "null (the model's own) or >= 3"),
    "dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "early_stopping_patience": (lambda v: v >= 1, "null (never stop early) or >= 1"),
    "threshold": (lambda v: 0 < v < 1, "in (0, 1)"),
    "window_stride": (lambda v: v >= 0, ">= 0"),
    "bucket_batches": (lambda v: v >= 1, ">= 1"),
    "eval_batch_size": (lambda v: v >= 1, ">= 1"),
    # 0 is not "no cap": null is.
    "max_train_examples": (lambda v: v >= 1, "null (no cap) or >= 1"),
    "max_eval_examples": (lambda v: v >= 1, "null (no cap) or >= 1"),
}
NULLABLE_FINETUNE_KEYS = ("max_length", "max_length_multilabel", "max_context", "early_stopping_patience",
                          "max_train_examples", "max_eval_examples")


def require_range(key: str, value: Any, test, rule: str) -> None:
    """Raise ConfigError naming ``key`` unless ``value`` is a number passing ``test``."""
    from mcbio.config.loader import ConfigError

    if isinstance(value, bool) or not isinstance(value, (int, float)) or not test(value):
        raise ConfigError(f"'{key}' must be {rule} (got {value!r})")


@dataclass
class EvalSuiteConfig:
    """Which tasks and seeds a model is fine-tuned on, and how; shared by a pretraining
    run's evaluation and the evaluation launcher, so both plan the same elements."""

    tasks: List[str] = field(default_factory=lambda: ["quaero_emea", "quaero_medline", "morfitt"])
    seeds: List[int] = field(default_factory=lambda: list(range(42, 51)))
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    # Per-task overrides of ``finetune`` keys, e.g. ``{morfitt: {lr: 5.0e-5, epochs: 20}}``.
    task_finetune: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    # Tasks declared in YAML (keys of mcbio.evaluate.tasks.TaskSpec), inline here or in
    # files; a declared task runs only when ``tasks`` names it.
    custom_tasks: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    task_files: List[str] = field(default_factory=list)
    # The results store: records go to ``<results_dir>/records/<run name>.jsonl``. Relative
    # paths are from the working directory. ``python -m mcbio.results report`` reads it.
    results_dir: str = "results"
    # A task whose data is absent: fail before submitting anything, or leave it out.
    skip_missing_tasks: bool = False

    def check_suite(self, prefix: str = "") -> None:
        from mcbio.config.loader import ConfigError

        if not self.tasks:
            raise ConfigError(f"'{prefix}tasks' is empty: name at least one task")
        if not self.seeds:
            raise ConfigError(f"'{prefix}seeds' is empty: name at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"'{prefix}seeds' has duplicates: {self.seeds}")
        self.finetune.check(f"{prefix}finetune.")
        known = {f.name for f in dataclasses.fields(FinetuneConfig)}
        for task, overrides in self.task_finetune.items():
            bad = sorted(set(overrides) - known)
            if bad:
                raise ConfigError(f"unknown config key '{prefix}task_finetune.{task}.{bad[0]}'. "
                                  f"Valid keys: {', '.join(sorted(known))}")
            self.finetune.merged(overrides, f"{prefix}task_finetune.{task}")


@dataclass
class EvaluationConfig(EvalSuiteConfig):
    """The evaluation stage of a pretraining run: one array element per (task, seed) on its export."""

    enabled: bool = True
    # What one element needs (unset keys: the profile's); GPUs are capped by the profile's.
    needs: JobNeeds = field(default_factory=lambda: JobNeeds(gpus_per_node=1, tasks_per_node=1))


@dataclass
class ReportConfig:
    enabled: bool = True
    decimal_comma: bool = False


# --------------------------------------------------------------------------- experiments


@dataclass
class PretrainRunConfig(RunConfig):
    """Continued pretraining (phases) -> HF export -> fine-tuning evaluation -> table."""

    name: str = "pretrain"
    # Stages planned, in order: pretraining (every phase, then the HF export), the evaluation
    # array on the export, the run's table. A relaunch skips what is done.
    stages: List[str] = field(default_factory=lambda: ["pretrain", "evaluate", "report"])
    model: ModelConfig = field(default_factory=ModelConfig)
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def check(self) -> None:
        """Cross-field rules the types cannot express; raise ConfigError naming the key."""
        from mcbio.config.loader import ConfigError

        for stage in self.stages:
            if stage not in STAGES:
                raise ConfigError(f"invalid value in 'stages': {stage!r}. Choose from: {', '.join(STAGES)}")
        if "evaluate" in self.stages and self.evaluation.enabled:
            self.evaluation.check_suite("evaluation.")
        if "pretrain" in self.stages and not self.train.phases:
            raise ConfigError("'train.phases' is empty: a pretraining run needs at least one phase")
        for name, phase in self.train.phases.items():
            key = f"train.phases.{name}"
            if phase.objective == "clm" and phase.mlm_probability != 0.0:
                raise ConfigError(f"'{key}.mlm_probability' must be 0.0 for a clm phase (no masking)")
            if phase.objective == "mlm" and not 0.0 < phase.mlm_probability < 1.0:
                raise ConfigError(f"'{key}.mlm_probability' must be in (0, 1) for an mlm phase")
            if phase.tokens <= 0:
                raise ConfigError(f"'{key}.tokens' must be positive")
        if self.data.max_split_padding < 0 or self.data.max_split_padding >= self.data.seq_len:
            raise ConfigError("'data.max_split_padding' must be in [0, data.seq_len)")
        if self.model.flash_attention_kernel != "flash_attn" and self.model.attn_implementation != "flash_attention_2":
            raise ConfigError(f"'model.flash_attention_kernel'={self.model.flash_attention_kernel} only applies to "
                              f"model.attn_implementation=flash_attention_2, not {self.model.attn_implementation}")
        gpus = self.resources.nodes * self.resources.gpus_per_node
        if gpus and self.resources.tasks_per_node != self.resources.gpus_per_node:
            raise ConfigError(
                f"'resources.tasks_per_node'={self.resources.tasks_per_node} must equal "
                f"'resources.gpus_per_node'={self.resources.gpus_per_node}: one task (Composer rank) per GPU"
            )
        from mcbio.config.batching import BatchPlanError, plan_batch

        try:
            plan_batch(self.train.global_batch_size, self.train.device_microbatch_size, max(1, gpus))
        except BatchPlanError as err:
            raise ConfigError(str(err)) from None


STAGES = ("pretrain", "evaluate", "report")
