"""Typed configuration of the biomed-fr-v2 curation pipeline (the recipe's data section).

Every threshold and coefficient of the recipe is a field here with the paper's default;
the FineWeb-2 ``fra_Latn`` values come from FineWeb-2's language configs (they are not
in datatrove) and are shipped here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from mcbio.config.schema import JobNeeds, RunConfig, choice
from mcbio.llm.config import LLMConfig

MIX_GROUPS = ("articles", "ontobook", "emea", "e3c")
CONTENT_TYPES = (
    "research_findings",
    "medical_knowledge",
    "clinical_guidance",
    "research_methodology",
    "drug_information",
    "background_review",
    "policy_administrative",
    "patient_case",
    "other",
)
SCORE_KEYS = ("edu", "cont", "writ", "term")
PIPELINE_STAGES = ("passages", "distil", "select", "mix_pack")


@dataclass
class SourceConfig:
    """One raw input. ``curate`` sources go through extraction, filters, annotation and
    upsampling; the others (ontology textbooks, EMEA, E3C in the paper) go straight to the mix."""

    path: Optional[str] = None
    format: str = choice("auto", "auto", "jsonl", "text", "e3c_json")
    # File name pattern under ``path`` (None: every file of the format).
    glob: Optional[str] = None
    group: str = choice("articles", *MIX_GROUPS)
    curate: bool = True
    # Documents read per pipeline task (-1 = all); smoke runs cap it.
    limit: int = -1
    # A document that cannot be read (invalid UTF-8 or JSON). ``fail``: the launch scans the
    # source for invalid UTF-8 and refuses it naming file and line, and a rank that meets a bad
    # document fails naming it. ``skip``: no scan; the document alone is dropped, counted as
    # ``dropped/invalid_utf8`` or ``dropped/invalid_json`` in the reader's statistics (the
    # stage table the launch prints). Never the rest of the file: datatrove's own reader
    # stops reading a file at its first undecodable byte, with a warning only.
    on_bad_document: str = choice("fail", "fail", "skip")


@dataclass
class SegmentConfig:
    # Long (PDF-derived) documents are cut into chunks of about this many tokens, at paragraph ends.
    target_tokens: int = 5000


@dataclass
class ExtractionConfig:
    enabled: bool = True
    prompt: str = "curation_extract"
    # Asked of the LLM in the prompt (and honoured by the rules responder).
    max_passage_words: int = 600
    # The extraction's own LLM settings; null = the curation's ``llm`` (which the annotation uses).
    # E.g. a small local model may label passages but not rewrite them: ``extraction.llm.backend=rules``.
    llm: Optional[LLMConfig] = None


@dataclass
class PassageFilterConfig:
    min_words: int = 30
    max_words: int = 600
    min_alpha_ratio: float = 0.60


@dataclass
class DedupConfig:
    enabled: bool = True
    # Jaccard similarity over word n-gram sets, against the previous ``window`` kept passages.
    threshold: float = 0.80
    window: int = 5
    ngram: int = 1


@dataclass
class GopherRepetitionConfig:
    """FineWeb-2 fra_Latn; paragraph checks off (0 disables them in datatrove)."""

    dup_line_frac: float = 0.264
    dup_para_frac: float = 0.0
    dup_line_char_frac: float = 0.0
    dup_para_char_frac: float = 0.0
    top_n_grams: Dict[int, float] = field(default_factory=lambda: {2: 0.161, 3: 0.149, 4: 0.134})
    dup_n_grams: Dict[int, float] = field(
        default_factory=lambda: {5: 0.15, 6: 0.141, 7: 0.131, 8: 0.121, 9: 0.111, 10: 0.1}
    )


@dataclass
class FineWebQualityConfig:
    line_punct_thr: float = 0.1
    short_line_thr: float = 999.0
    short_line_length: int = 30
    char_duplicates_ratio: float = 0.1
    new_line_ratio: float = 0.185


@dataclass
class GopherQualityConfig:
    min_doc_words: Optional[int] = 50
    max_doc_words: Optional[int] = 100000
    min_avg_word_length: Optional[float] = 2
    max_avg_word_length: Optional[float] = 11
    max_symbol_word_ratio: Optional[float] = 0.1
    max_bullet_lines_ratio: Optional[float] = 0.9
    max_ellipsis_lines_ratio: Optional[float] = 0.3
    max_non_alpha_words_ratio: Optional[float] = 0.812
    min_stop_words: Optional[int] = 2
    # datatrove's default stop words are English: without these a good French text fails.
    stop_words: List[str] = field(
        default_factory=lambda: [
            "de", "la", "le", "et", "à", "en", "l'", "des", "du", "les", "est", "d'",
            "un", "une", "il", "dans", "par", "au",
        ]
    )


@dataclass
class FineWeb2Config:
    enabled: bool = True
    language: str = "fra"
    fix_encoding: bool = True
    repetition: GopherRepetitionConfig = field(default_factory=GopherRepetitionConfig)
    fineweb_quality: FineWebQualityConfig = field(default_factory=FineWebQualityConfig)
    gopher_quality: GopherQualityConfig = field(default_factory=GopherQualityConfig)
    # fra_Latn language-ID threshold. The fastText LID model is not shipped (no downloads at
    # run time): the filter runs only when ``language_model`` names a local GlotLID/fastText file.
    language_score: float = 0.824
    language_model: Optional[str] = None
    language_label: str = "__label__fra_Latn"


@dataclass
class ClassifierConfig:
    """TF-IDF + linear models distilled from the LLM labels (FineWeb-Edu style)."""

    max_features: int = 50000
    ngram_max: int = 2
    C: float = 1.0
    ridge_alpha: float = 1.0
    # Share of the labelled sample held out to measure the classifier.
    heldout_fraction: float = 0.2
    min_labelled: int = 20


@dataclass
class AnnotationConfig:
    prompt: str = "curation_annotate"
    # Share of passages the LLM labels; the distilled classifier labels the rest. 1.0 = all by LLM.
    llm_sample_fraction: float = 1.0
    sample_seed: int = 0
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)


@dataclass
class SelectionConfig:
    drop_types: List[str] = field(default_factory=lambda: ["drug_information", "other"])
    min_tokens: int = 50


@dataclass
class UpsamplingConfig:
    """Per-article quality ratio = share of its passages with edu >= edu_min AND cont >= cont_min.

    ratio 0 -> ``zero_factor`` (0 = article excluded); ratio 1 -> ``full_factor``;
    otherwise the first bucket whose upper bound is >= ratio (the last bound is open at 1).
    Percentages are rounded to whole percents first, as the paper's buckets (1-25 %, 26-50 %...) are.
    """

    edu_min: int = 7
    cont_min: int = 7
    zero_factor: float = 0.0
    full_factor: float = 34.1
    bucket_upper_bounds: List[float] = field(default_factory=lambda: [0.25, 0.50, 0.75, 1.0])
    bucket_factors: List[float] = field(default_factory=lambda: [4.3, 8.5, 12.8, 21.3])
    seed: int = 0

    def buckets(self) -> List[Dict[str, float]]:
        """The buckets as the paper's Table 7 writes them: whole percents ``low``-``high`` -> ``factor``."""
        rows = [{"low": 0.0, "high": 0.0, "factor": self.zero_factor}]
        low = 1.0
        for bound, factor in zip(self.bucket_upper_bounds, self.bucket_factors):
            high = round(bound * 100) - (1 if bound >= 1.0 else 0)
            rows.append({"low": low, "high": float(high), "factor": factor})
            low = float(high + 1)
        rows.append({"low": 100.0, "high": 100.0, "factor": self.full_factor})
        return rows


@dataclass
class MixConfig:
    shares: Dict[str, float] = field(
        default_factory=lambda: {"articles": 0.70, "ontobook": 0.20, "emea": 0.06, "e3c": 0.04}
    )
    # Tokens in the final mix; None = as many as the scarcest group allows without repeating it.
    total_tokens: Optional[int] = 10_000_000_000
    # Absent groups: renormalise the others' shares (with a warning) instead of failing.
    renormalize_missing: bool = True
    seed: int = 42
    # Documents held at once to shuffle the streamed mix locally: the stage's memory is bounded
    # by this (and the packer's shard buffer), not by the corpus. 1 = no local shuffle.
    shuffle_buffer: int = 10_000


@dataclass
class PackConfig:
    # Local tokenizer folder (the model's); None = train a BPE tokenizer on the mixed corpus.
    tokenizer: Optional[str] = None
    tokenizer_vocab_size: int = 32768
    seq_len: int = 8192
    sequences_per_shard: int = 4096


@dataclass
class ExecutorConfig:
    """How the datatrove stages run: each rank of a stage is one element of that stage's job array."""

    # Ranks of the multi-rank stages (passages, select); distil and mix_pack have one.
    tasks: int = 4
    # One element of the LLM stage (passages, with an LLM backend): one GPU for vLLM / transformers.
    llm_needs: JobNeeds = field(default_factory=lambda: JobNeeds(gpus_per_node=1, tasks_per_node=1))
    # One element of the other stages, and of the passages stage with the rules backend: CPU only.
    cpu_needs: JobNeeds = field(default_factory=lambda: JobNeeds(gpus_per_node=0, tasks_per_node=1))


@dataclass
class DecontaminationConfig:
    """Remove evaluation test text from the pretraining documents, by GPT-3's rule
    (Brown et al. 2020, "Language Models are Few-Shot Learners", Appendix C), every number
    below with its value there.

    A word n-gram of a test example *collides* with a pretraining document that holds it,
    unless it is corpus boilerplate: found in more than ``max_document_frequency`` pretraining
    documents (counted over every group by the ``overlap_counts`` stage, planned before
    ``select`` whenever this is enabled). Each collision is cut out with ``window_chars``
    on either side, splitting the document into pieces; pieces shorter than ``min_piece_chars``
    go too; a document split into more than ``max_pieces`` pieces (or with nothing left) is
    dropped whole, to ``rejects/overlap/``. Runs first in ``select``, on every group (curated
    or not), before upsampling and mixing; counts go to ``curation_stats.json``.
    """

    enabled: bool = False
    # Words per n-gram (lower-cased word tokens): 13 as in GPT-3.
    ngram: int = 13
    # Evaluation tasks (registry names) whose split is checked; a study fills in its own tasks.
    tasks: List[str] = field(default_factory=list)
    split: str = "test"
    # A test n-gram in more than this many pretraining documents is boilerplate (common phrases,
    # legal or leaflet text) and never collides: GPT-3 ignored 13-grams of more than 10 documents.
    max_document_frequency: int = 10
    # Characters removed on each side of a colliding n-gram (GPT-3: 200), widened to whole words.
    window_chars: int = 200
    # Pieces left by the cuts shorter than this are removed too (GPT-3: 200 characters).
    min_piece_chars: int = 200
    # A document cut into more than this many pieces is contaminated and dropped whole (GPT-3: 10).
    max_pieces: int = 10

    def check(self) -> None:
        from mcbio.config.loader import ConfigError

        if not self.enabled:
            return
        for key in ("ngram", "max_document_frequency", "max_pieces"):
            if getattr(self, key) < 1:
                raise ConfigError(f"'decontamination.{key}' must be >= 1 (got {getattr(self, key)})")
        for key in ("window_chars", "min_piece_chars"):
            if getattr(self, key) < 0:
                raise ConfigError(f"'decontamination.{key}' must be >= 0 (got {getattr(self, key)})")


@dataclass
class CurationSettings:
    """What the curation does, without where and how it is scheduled (a study nests these)."""

    stages: List[str] = field(default_factory=lambda: list(PIPELINE_STAGES))
    # Named inputs; ``sources.<name>=null`` leaves one out (presets use it).
    sources: Dict[str, Optional[SourceConfig]] = field(default_factory=dict)
    llm: LLMConfig = field(default_factory=LLMConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    extraction: ExtractionConfig = field(default_factory=ExtractionConfig)
    passage_filter: PassageFilterConfig = field(default_factory=PassageFilterConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    fineweb2: FineWeb2Config = field(default_factory=FineWeb2Config)
    annotation: AnnotationConfig = field(default_factory=AnnotationConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    upsampling: UpsamplingConfig = field(default_factory=UpsamplingConfig)
    mix: MixConfig = field(default_factory=MixConfig)
    pack: PackConfig = field(default_factory=PackConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    decontamination: DecontaminationConfig = field(default_factory=DecontaminationConfig)
    # Fidelity distribution thresholds (share of passage characters found in the source).
    fidelity_thresholds: List[float] = field(default_factory=lambda: [0.99, 0.95, 0.90, 0.80, 0.50])

    def active_sources(self) -> Dict[str, SourceConfig]:
        return {k: v for k, v in self.sources.items() if v is not None}

    def extraction_llm(self) -> LLMConfig:
        return self.extraction.llm or self.llm

    def passages_llm_backends(self) -> List[str]:
        """The backends the ``passages`` stage runs (extraction if enabled, annotation)."""
        return ([self.extraction_llm().backend] if self.extraction.enabled else []) + [self.llm.backend]

    def check(self) -> None:
        from mcbio.config.loader import ConfigError

        for stage in self.stages:
            if stage not in PIPELINE_STAGES:
                raise ConfigError(f"invalid value in 'stages': {stage!r}. Choose from: {', '.join(PIPELINE_STAGES)}")
        if not self.active_sources():
            raise ConfigError("'sources' is empty: name at least one input (sources.<name>.path)")
        for name, src in self.active_sources().items():
            if not src.path:
                raise ConfigError(f"'sources.{name}.path' is not set")
        for key, value in self.mix.shares.items():
            if key not in MIX_GROUPS:
                raise ConfigError(f"'mix.shares.{key}': unknown group. Choose from: {', '.join(MIX_GROUPS)}")
            if value < 0:
                raise ConfigError(f"'mix.shares.{key}' must be >= 0")
        if self.mix.shuffle_buffer < 1:
            raise ConfigError(f"'mix.shuffle_buffer' must be >= 1 (got {self.mix.shuffle_buffer})")
        if abs(sum(self.mix.shares.values()) - 1.0) > 1e-6:
            raise ConfigError(f"'mix.shares' must sum to 1 (got {sum(self.mix.shares.values()):.4f})")
        up = self.upsampling
        if len(up.bucket_upper_bounds) != len(up.bucket_factors):
            raise ConfigError("'upsampling.bucket_upper_bounds' and 'upsampling.bucket_factors' differ in length")
        if list(up.bucket_upper_bounds) != sorted(up.bucket_upper_bounds) or up.bucket_upper_bounds[-1] != 1.0:
            raise ConfigError("'upsampling.bucket_upper_bounds' must increase and end at 1.0")
        for t in self.selection.drop_types:
            if t not in CONTENT_TYPES:
                raise ConfigError(f"'selection.drop_types': unknown type {t!r}. Choose from: {', '.join(CONTENT_TYPES)}")
        if not 0.0 < self.annotation.llm_sample_fraction <= 1.0:
            raise ConfigError("'annotation.llm_sample_fraction' must be in (0, 1]")
        pf = self.passage_filter
        if pf.min_words > pf.max_words:
            raise ConfigError("'passage_filter.min_words' is larger than 'passage_filter.max_words'")
        self.decontamination.check()


@dataclass
class CurationRunConfig(CurationSettings, RunConfig):
    """Raw documents -> passages -> filters -> labels -> upsampled mix -> packed shards."""

    name: str = "curation"
