"""Assemble the curation steps from the typed config."""

from __future__ import annotations

from typing import List, Optional

from mcbio.config.curation import CurationRunConfig, FineWeb2Config
from mcbio.data.curation.steps import (
    DatatroveFilter,
    DatatroveFormatter,
    JaccardDedup,
    LanguageScoreFilter,
    LLMAnnotation,
    LLMExtraction,
    PassageFilter,
    QualityUpsampler,
    Segmenter,
    TypeAndLengthFilter,
    rejects_writer,
)
from mcbio.data.curation.text import TokenCounter


def _datatrove_filter(inner, counter: Optional[TokenCounter], rejects_dir: Optional[str]) -> DatatroveFilter:
    return DatatroveFilter(inner, counter, rejects_writer(rejects_dir, type(inner).__name__))


def fineweb2_steps(cfg: FineWeb2Config, counter: Optional[TokenCounter] = None,
                   rejects_dir: Optional[str] = None, reference: bool = False) -> List:
    """FineWeb-2's French chain on datatrove's filters, fra_Latn values from the config.

    The filters share one word tokenisation per document (:mod:`mcbio.data.curation.fineweb2`);
    ``reference=True`` runs datatrove's filters exactly as shipped, with the same decisions.
    With ``rejects_dir``, what each filter drops is saved under ``<rejects_dir>/<filter>/``.
    """
    from datatrove.pipeline.formatters import FTFYFormatter

    from mcbio.data.curation.fineweb2 import fineweb2_filters

    steps: List = []
    if cfg.fix_encoding:
        steps.append(DatatroveFormatter(FTFYFormatter(), counter))
    if cfg.language_model:
        steps.append(LanguageScoreFilter(cfg.language_model, cfg.language_label, cfg.language_score, counter,
                                         rejects_writer(rejects_dir, LanguageScoreFilter.name)))
    steps.extend(_datatrove_filter(f, counter, rejects_dir) for f in fineweb2_filters(cfg, reference))
    return steps


def passage_steps(cfg: CurationRunConfig, rejects_dir: Optional[str], counter: TokenCounter,
                  engine_log_dir: Optional[str] = None) -> List:
    """Stage 'passages': segment -> extract -> passage filters -> dedup -> FineWeb-2 -> LLM labels (sample).

    Every step that drops documents saves them under ``<rejects_dir>/<step>/`` (datatrove's
    exclusion writers), answers the LLM still got wrong after its retries included. A server
    engine (vllm, llamacpp) writes its log under ``engine_log_dir``.
    """
    steps: List = [Segmenter(cfg.segment.target_tokens, counter, rejects_writer(rejects_dir, Segmenter.name))]
    if cfg.extraction.enabled:
        steps.append(LLMExtraction(cfg.extraction_llm(), cfg.extraction.max_passage_words, cfg.extraction.prompt,
                                   counter, cfg.fidelity_thresholds, rejects_writer(rejects_dir, LLMExtraction.name),
                                   engine_log_dir))
    pf = cfg.passage_filter
    steps.append(PassageFilter(pf.min_words, pf.max_words, pf.min_alpha_ratio, counter,
                               rejects_writer(rejects_dir, PassageFilter.name)))
    if cfg.dedup.enabled:
        steps.append(JaccardDedup(cfg.dedup.threshold, cfg.dedup.window, cfg.dedup.ngram, counter,
                                  rejects_writer(rejects_dir, JaccardDedup.name)))
    if cfg.fineweb2.enabled:
        steps.extend(fineweb2_steps(cfg.fineweb2, counter, rejects_dir))
    ann = cfg.annotation
    steps.append(LLMAnnotation(cfg.llm, ann.llm_sample_fraction, ann.sample_seed, ann.prompt, counter,
                               rejects_writer(rejects_dir, LLMAnnotation.name), engine_log_dir))
    return steps


def selection_steps(cfg: CurationRunConfig, classifier_path: Optional[str], counter: TokenCounter,
                    rejects_dir: Optional[str] = None, report_dir: Optional[str] = None,
                    counts_dir: Optional[str] = None) -> List:
    """Stage 'select': [test-split overlap] -> classifier labels for the rest -> type/length filter
    -> quality upsampling.

    The overlap filter comes first, on every group, so that no step spends work on (and no
    upsampling multiplies) test text; it reads the document frequencies that the
    ``overlap_counts`` stage wrote to ``counts_dir`` and writes its per-rank reports to ``report_dir``.
    """
    from mcbio.data.curation.distil import ClassifierAnnotation

    steps: List = []
    dc = cfg.decontamination
    if dc.enabled:
        from mcbio.data.curation.decontamination import OverlapFilter

        steps.append(OverlapFilter(dc, counts_dir, cfg.executor.tasks, cfg.paths.shared_data, counter,
                                   rejects_writer(rejects_dir, OverlapFilter.name), report_dir))
    if classifier_path:
        steps.append(ClassifierAnnotation(classifier_path, counter))
    steps.append(TypeAndLengthFilter(cfg.selection.drop_types, cfg.selection.min_tokens, counter,
                                     rejects_writer(rejects_dir, TypeAndLengthFilter.name)))
    steps.append(QualityUpsampler(cfg.upsampling, counter, rejects_writer(rejects_dir, QualityUpsampler.name)))
    return steps
