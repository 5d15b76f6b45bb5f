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
                   rejects_dir: Optional[str] = None) -> List:
    """FineWeb-2's French chain on datatrove's own filters, fra_Latn values from the config.

    With ``rejects_dir``, what each filter drops is saved under ``<rejects_dir>/<filter>/``.
    """
    from datatrove.pipeline.filters import FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter
    from datatrove.pipeline.formatters import FTFYFormatter

    steps: List = []
    if cfg.fix_encoding:
        steps.append(DatatroveFormatter(FTFYFormatter(), counter))
    if cfg.language_model:
        steps.append(LanguageScoreFilter(cfg.language_model, cfg.language_label, cfg.language_score, counter,
                                         rejects_writer(rejects_dir, LanguageScoreFilter.name)))
    rep = cfg.repetition
    steps.append(_datatrove_filter(GopherRepetitionFilter(
        dup_line_frac=rep.dup_line_frac, dup_para_frac=rep.dup_para_frac,
        dup_line_char_frac=rep.dup_line_char_frac, dup_para_char_frac=rep.dup_para_char_frac,
        top_n_grams=tuple(sorted(rep.top_n_grams.items())), dup_n_grams=tuple(sorted(rep.dup_n_grams.items())),
        language=cfg.language,
    ), counter, rejects_dir))
    fq = cfg.fineweb_quality
    steps.append(_datatrove_filter(FineWebQualityFilter(
        line_punct_thr=fq.line_punct_thr, short_line_thr=fq.short_line_thr, short_line_length=fq.short_line_length,
        char_duplicates_ratio=fq.char_duplicates_ratio, new_line_ratio=fq.new_line_ratio, language=cfg.language,
    ), counter, rejects_dir))
    gq = cfg.gopher_quality
    steps.append(_datatrove_filter(GopherQualityFilter(
        min_doc_words=gq.min_doc_words, max_doc_words=gq.max_doc_words,
        min_avg_word_length=gq.min_avg_word_length, max_avg_word_length=gq.max_avg_word_length,
        max_symbol_word_ratio=gq.max_symbol_word_ratio, max_bullet_lines_ratio=gq.max_bullet_lines_ratio,
        max_ellipsis_lines_ratio=gq.max_ellipsis_lines_ratio, max_non_alpha_words_ratio=gq.max_non_alpha_words_ratio,
        min_stop_words=gq.min_stop_words, stop_words=list(gq.stop_words), language=cfg.language,
    ), counter, rejects_dir))
    return steps


def passage_steps(cfg: CurationRunConfig, rejects_dir: Optional[str], counter: TokenCounter) -> List:
    """Stage 'passages': segment -> extract -> passage filters -> dedup -> FineWeb-2 -> LLM labels (sample).

    Every step that drops documents saves them under ``<rejects_dir>/<step>/`` (datatrove's
    exclusion writers), answers the LLM still got wrong after its retries included.
    """
    steps: List = [Segmenter(cfg.segment.target_tokens, counter, rejects_writer(rejects_dir, Segmenter.name))]
    if cfg.extraction.enabled:
        steps.append(LLMExtraction(cfg.llm, cfg.extraction.max_passage_words, cfg.extraction.prompt, counter,
                                   cfg.fidelity_thresholds, rejects_writer(rejects_dir, LLMExtraction.name)))
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
                               rejects_writer(rejects_dir, LLMAnnotation.name)))
    return steps


def selection_steps(cfg: CurationRunConfig, classifier_path: Optional[str], counter: TokenCounter,
                    rejects_dir: Optional[str] = None, report_dir: Optional[str] = None) -> List:
    """Stage 'select': [test-split overlap] -> classifier labels for the rest -> type/length filter
    -> quality upsampling.

    The overlap filter comes first, on every group, so that no step spends work on (and no
    upsampling multiplies) a document that holds test text; its per-rank reports go to ``report_dir``.
    """
    from mcbio.data.curation.distil import ClassifierAnnotation

    steps: List = []
    dc = cfg.decontamination
    if dc.enabled:
        from mcbio.data.curation.decontamination import OverlapFilter

        steps.append(OverlapFilter(dc.tasks, dc.split, cfg.paths.shared_data, dc.ngram, counter,
                                   rejects_writer(rejects_dir, OverlapFilter.name), report_dir))
    if classifier_path:
        steps.append(ClassifierAnnotation(classifier_path, counter))
    steps.append(TypeAndLengthFilter(cfg.selection.drop_types, cfg.selection.min_tokens, counter,
                                     rejects_writer(rejects_dir, TypeAndLengthFilter.name)))
    steps.append(QualityUpsampler(cfg.upsampling, counter, rejects_writer(rejects_dir, QualityUpsampler.name)))
    return steps
