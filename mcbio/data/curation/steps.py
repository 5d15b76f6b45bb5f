"""datatrove ``PipelineStep``s of the curation pipeline.

Every step counts, in datatrove's per-step stats: ``in``, ``kept``, ``dropped/<reason>``,
``tokens_in``, ``tokens_kept`` (and ``passthrough`` for documents of sources that are not
curated, which every curation step forwards untouched). :mod:`mcbio.data.curation.stats`
turns them into the report's table.

The filters are datatrove ``BaseFilter``s: given an ``exclusion_writer`` (datatrove's way of
keeping what a filter drops; :func:`rejects_writer` gives one under ``rejects/<step>/``) they
save each dropped document with its ``filter_reason`` in the metadata. The other steps that
drop documents (segmentation, the LLM steps, upsampling) save theirs through the same writer.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterable, Iterator, List, Optional

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter, get_filter_result
from datatrove.pipeline.writers.disk_base import DiskWriter

from mcbio.data.curation.text import TokenCounter, alpha_ratio, word_count
from mcbio.seeding import stable_unit

# Under ``rejects/<step>/``: one gzipped JSON Lines file per datatrove rank.
REJECTS_FILENAME = "${rank}.jsonl.gz"


def rejects_writer(rejects_dir: Optional[str], step: str) -> Optional[DiskWriter]:
    """datatrove's JsonlWriter for the documents ``step`` drops: ``<rejects_dir>/<step>/<rank>.jsonl.gz``.

    None without ``rejects_dir``: dropped documents are then only counted.
    """
    if not rejects_dir:
        return None
    from datatrove.pipeline.writers import JsonlWriter

    return JsonlWriter(os.path.join(rejects_dir, step), output_filename=REJECTS_FILENAME)


def is_curated(doc: Document) -> bool:
    return bool(doc.metadata.get("curate", True))


class _StepCounts:
    """The counts every curation step keeps (documents and tokens in, kept, dropped)."""

    type = "🧬 CURATION"
    counter: TokenCounter

    def tokens(self, doc: Document) -> int:
        n = doc.metadata.get("n_tokens")
        if n is None:
            n = self.counter(doc.text)
            doc.metadata["n_tokens"] = n
        return n

    def count_in(self, doc: Document) -> None:
        self.stat_update("in")
        self.stat_update("tokens_in", value=self.tokens(doc), unit="doc")

    def count_kept(self, doc: Document) -> None:
        self.stat_update("kept")
        self.stat_update("tokens_kept", value=self.tokens(doc), unit="doc")

    def count_dropped(self, doc: Document, reason: str) -> None:
        self.stat_update(f"dropped/{reason}")
        self.stat_update("tokens_dropped", value=self.tokens(doc), unit="doc")


class CurationStep(_StepCounts, PipelineStep):
    """A step that transforms, splits or drops curated documents; ``process`` is per document."""

    def __init__(self, counter: Optional[TokenCounter] = None, exclusion_writer: Optional[DiskWriter] = None) -> None:
        super().__init__()
        self.counter = counter or TokenCounter()
        self.exclusion_writer = exclusion_writer
        self._rank = 0

    @contextlib.contextmanager
    def saving_rejects(self, rank: int) -> Iterator[None]:
        """Open the exclusion writer (if any) for the documents :meth:`drop` gets during a run."""
        self._rank = rank
        with self.exclusion_writer if self.exclusion_writer else contextlib.nullcontext():
            yield

    def drop(self, doc: Document, reason: str) -> None:
        """Count ``doc`` as dropped and save it, as datatrove's filters do, to the exclusion writer."""
        self.count_dropped(doc, reason)
        if self.exclusion_writer:
            doc.metadata["filter_reason"] = reason
            self.exclusion_writer.write(doc, self._rank)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with self.saving_rejects(rank):
            for doc in data or ():
                if not is_curated(doc):
                    self.stat_update("passthrough")
                    yield doc
                    continue
                with self.track_time():
                    self.count_in(doc)
                    out = list(self.process(doc))
                yield from out

    def process(self, doc: Document) -> Iterable[Document]:
        raise NotImplementedError


class CurationFilter(_StepCounts, BaseFilter):
    """A filter of curated documents on datatrove's ``BaseFilter``: its ``exclusion_writer``
    saves every document that :meth:`drop_reason` rejects."""

    def __init__(self, counter: Optional[TokenCounter] = None, exclusion_writer: Optional[DiskWriter] = None) -> None:
        super().__init__(exclusion_writer)
        self.counter = counter or TokenCounter()

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if not is_curated(doc):
            self.stat_update("passthrough")
            return True
        self.count_in(doc)
        reason = self.drop_reason(doc)
        if reason:
            self.count_dropped(doc, reason)
            return False, reason
        self.count_kept(doc)
        return True

    def drop_reason(self, doc: Document) -> Optional[str]:
        """Why ``doc`` is dropped, or None to keep it."""
        raise NotImplementedError


# --------------------------------------------------------------------------- segmentation


class Segmenter(CurationStep):
    name = "segment"

    def __init__(self, target_tokens: int, counter: Optional[TokenCounter] = None,
                 exclusion_writer: Optional[DiskWriter] = None) -> None:
        super().__init__(counter, exclusion_writer)
        self.target_tokens = target_tokens

    def process(self, doc):
        from mcbio.data.curation.segment import segment_text

        chunks = segment_text(doc.text, self.target_tokens, self.counter)
        if not chunks:
            self.drop(doc, "empty")
            return
        article = doc.metadata.get("article_id", doc.id)
        for k, chunk in enumerate(chunks):
            meta = {**doc.metadata, "article_id": article, "chunk": k}
            meta.pop("n_tokens", None)
            out = Document(text=chunk, id=f"{doc.id}/c{k}", metadata=meta)
            self.count_kept(out)
            yield out
        self.stat_update("chunks_out", value=len(chunks))


# --------------------------------------------------------------------------- LLM stages


class _BatchedLLMStep(CurationStep):
    """Collects curated documents into batches of ``llm.batch_size`` for one generate call."""

    task = ""

    def __init__(self, llm_cfg, counter: Optional[TokenCounter] = None,
                 exclusion_writer: Optional[DiskWriter] = None, engine_log_dir: Optional[str] = None) -> None:
        super().__init__(counter, exclusion_writer)
        self.llm_cfg = llm_cfg
        # Where a server engine writes its log (None: a temporary file, named in the job's log).
        self.engine_log_dir = engine_log_dir
        self._backend = None

    @property
    def backend(self):
        if self._backend is None:
            from mcbio.llm.backends import acquire_backend

            self._backend = acquire_backend(self.llm_cfg, self.engine_log_dir)
        return self._backend

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_backend"] = None
        return state

    def wants(self, doc: Document) -> bool:
        return True

    def run(self, data, rank: int = 0, world_size: int = 1):
        try:
            yield from self._run(data, rank)
        finally:
            if self._backend is not None:  # a server engine stops with the last step using it
                from mcbio.llm.backends import release_backend

                release_backend(self._backend)
                self._backend = None

    def _run(self, data, rank: int):
        # Documents leave in the order they came (later steps group an article's passages
        # by adjacency), so skipped ones wait in ``pending`` with the batch.
        pending: List[tuple[Document, bool]] = []
        batch: List[Document] = []
        with self.saving_rejects(rank):
            for doc in data or ():
                selected = is_curated(doc) and self.wants(doc)
                if not selected:
                    self.stat_update("passthrough" if not is_curated(doc) else "not_sampled")
                else:
                    self.count_in(doc)
                    batch.append(doc)
                pending.append((doc, selected))
                if len(batch) >= self.llm_cfg.batch_size:
                    yield from self._flush(pending, batch)
                    pending, batch = [], []
            if pending:
                yield from self._flush(pending, batch)

    def _flush(self, pending, batch: List[Document]):
        answered = {id(d): out for d, out in zip(batch, self._answer(batch))} if batch else {}
        for doc, selected in pending:
            if selected:
                yield from answered[id(doc)]
            else:
                yield doc

    def _answer(self, batch: List[Document]) -> List[List[Document]]:
        import dataclasses

        from mcbio.llm import generate_structured, validation_counts
        from mcbio.llm.accounting import llm_counters

        before = dataclasses.replace(self.backend.usage)
        with self.track_time(unit="batch"):
            results = generate_structured(
                self.backend, [(self.prompt(d), self.parse) for d in batch],
                self.schema if self.llm_cfg.guided_json else None, self.llm_cfg.max_retries, task=self.task,
            )
        # Tokens, time and answer validity: the curation statistics' LLM block (mcbio.llm.accounting).
        for key, value in llm_counters(self.backend.usage.minus(before), validation_counts(results)).items():
            self.stat_update(key, value=value, unit="batch")
        out: List[List[Document]] = []
        for doc, res in zip(batch, results):
            self.stat_update("llm_attempts", value=res.attempts)
            if res.error is not None:
                # Set aside with every answer it got, so that nothing is lost silently.
                doc.metadata.update(llm_task=self.task, llm_error=res.error, llm_attempts=res.attempts,
                                    llm_answers=res.raw)
                self.drop(doc, "llm_rejected")
                out.append([])
                continue
            out.append(list(self.accept(doc, res.value)))
        return out


class LLMExtraction(_BatchedLLMStep):
    """Chunk -> clean passages (one document each), with their fidelity to the chunk."""

    name = "llm_extract"

    def __init__(self, llm_cfg, max_words: int, prompt_name: str = "curation_extract",
                 counter: Optional[TokenCounter] = None,
                 fidelity_thresholds: Iterable[float] = (0.99, 0.95, 0.90, 0.80, 0.50),
                 exclusion_writer: Optional[DiskWriter] = None, engine_log_dir: Optional[str] = None) -> None:
        from mcbio.data.curation.llm_tasks import EXTRACT_TASK

        self.fidelity_thresholds = tuple(fidelity_thresholds)
        self.task = EXTRACT_TASK
        super().__init__(llm_cfg, counter, exclusion_writer, engine_log_dir)
        self.max_words = max_words
        self.prompt_name = prompt_name

    @property
    def schema(self):
        from mcbio.data.curation.llm_tasks import EXTRACTION_SCHEMA

        return EXTRACTION_SCHEMA

    def prompt(self, doc):
        from mcbio.data.curation.llm_tasks import extraction_prompt

        return extraction_prompt(doc.text, self.max_words, self.prompt_name)

    def parse(self, answer):
        from mcbio.data.curation.llm_tasks import parse_extraction

        return parse_extraction(answer)

    def accept(self, doc, passages):
        from mcbio.data.curation.fidelity import character_overlap

        if not passages:
            self.drop(doc, "no_passage")
        for k, text in enumerate(passages):
            overlap = character_overlap(text, doc.text)
            for t in self.fidelity_thresholds:
                if overlap >= t:
                    self.stat_update(f"fidelity/>={round(t * 100)}%")
            meta = {**doc.metadata, "source_chunk": doc.id, "fidelity": round(overlap, 4)}
            meta.pop("n_tokens", None)
            out = Document(text=text, id=f"{doc.id}/p{k}", metadata=meta)
            self.stat_update("passages_out")
            self.stat_update("tokens_kept", value=self.tokens(out), unit="doc")
            yield out
        if passages:
            self.stat_update("kept")


# Stats keys of the annotation's label counts: ``labels/<key>/<value>``.
LABEL_PREFIX = "labels/"


def in_llm_sample(doc_id: str, fraction: float, seed: int) -> bool:
    """Whether the LLM labels this passage: a draw fixed by (seed, id), whatever the task split."""
    return fraction >= 1.0 or stable_unit(seed, doc_id) < fraction


class LLMAnnotation(_BatchedLLMStep):
    """Scores (edu, cont, writ, term) and content type of each sampled passage."""

    name = "llm_annotate"

    def __init__(self, llm_cfg, sample_fraction: float = 1.0, sample_seed: int = 0,
                 prompt_name: str = "curation_annotate", counter: Optional[TokenCounter] = None,
                 exclusion_writer: Optional[DiskWriter] = None, engine_log_dir: Optional[str] = None) -> None:
        from mcbio.data.curation.llm_tasks import ANNOTATE_TASK

        self.task = ANNOTATE_TASK
        super().__init__(llm_cfg, counter, exclusion_writer, engine_log_dir)
        self.sample_fraction = sample_fraction
        self.sample_seed = sample_seed
        self.prompt_name = prompt_name

    @property
    def schema(self):
        from mcbio.data.curation.llm_tasks import ANNOTATION_SCHEMA

        return ANNOTATION_SCHEMA

    def wants(self, doc):
        return in_llm_sample(doc.id, self.sample_fraction, self.sample_seed)

    def prompt(self, doc):
        from mcbio.data.curation.llm_tasks import annotation_prompt

        return annotation_prompt(doc.text, self.prompt_name)

    def parse(self, answer):
        from mcbio.data.curation.llm_tasks import parse_annotation

        return parse_annotation(answer)

    def accept(self, doc, labels):
        doc.metadata["labels"] = labels
        doc.metadata["labels_by"] = f"llm:{self.llm_cfg.backend}"
        # The labels' distribution: an annotator that gives every passage the same score says nothing.
        for key, value in labels.items():
            self.stat_update(f"{LABEL_PREFIX}{key}/{value}")
        self.count_kept(doc)
        yield doc


# --------------------------------------------------------------------------- filters


class PassageFilter(CurationFilter):
    """30-600 words and >= 60 % alphabetic characters (recipe step 3)."""

    name = "passage_filter"

    def __init__(self, min_words: int, max_words: int, min_alpha_ratio: float,
                 counter: Optional[TokenCounter] = None, exclusion_writer: Optional[DiskWriter] = None) -> None:
        super().__init__(counter, exclusion_writer)
        self.min_words, self.max_words, self.min_alpha_ratio = min_words, max_words, min_alpha_ratio

    def reason(self, text: str) -> Optional[str]:
        n = word_count(text)
        if n < self.min_words:
            return "too_few_words"
        if n > self.max_words:
            return "too_many_words"
        if alpha_ratio(text) < self.min_alpha_ratio:
            return "low_alpha_ratio"
        return None

    def drop_reason(self, doc):
        return self.reason(doc.text)


class JaccardDedup(CurationFilter):
    """Drops a passage whose Jaccard similarity to one of the last ``window`` kept passages
    (in this task's stream, where an article's passages are adjacent) reaches ``threshold``."""

    name = "jaccard_dedup"

    def __init__(self, threshold: float, window: int, ngram: int = 1, counter: Optional[TokenCounter] = None,
                 exclusion_writer: Optional[DiskWriter] = None) -> None:
        super().__init__(counter, exclusion_writer)
        self.threshold, self.window, self.ngram = threshold, window, ngram

    def run(self, data, rank: int = 0, world_size: int = 1):
        from mcbio.data.curation.dedup import WindowDeduplicator

        self._dedup = WindowDeduplicator(self.threshold, self.window, self.ngram)
        yield from super().run(data, rank, world_size)

    def drop_reason(self, doc):
        dup, _ = self._dedup.is_duplicate(doc.text)
        return "near_duplicate" if dup else None


class DatatroveFilter(CurationFilter):
    """Runs one of datatrove's filters (Gopher, FineWeb...) with this pipeline's accounting;
    drop reasons are ``<filter class>:<datatrove's reason>``."""

    def __init__(self, inner: BaseFilter, counter: Optional[TokenCounter] = None,
                 exclusion_writer: Optional[DiskWriter] = None) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", type(inner).__name__)
        super().__init__(counter, exclusion_writer)

    def drop_reason(self, doc):
        ok, reason = get_filter_result(self.inner.filter(doc))
        return None if ok else f"{type(self.inner).__name__}:{reason or 'rejected'}"


class DatatroveFormatter(CurationStep):
    """Runs one of datatrove's formatters (FTFY encoding fix); counts documents it changed."""

    def __init__(self, inner, counter: Optional[TokenCounter] = None) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", type(inner).__name__)
        super().__init__(counter)

    def process(self, doc):
        fixed = self.inner.format(doc.text)
        if fixed != doc.text:
            self.stat_update("changed")
            doc.text = fixed
            doc.metadata.pop("n_tokens", None)
        self.count_kept(doc)
        yield doc


class LanguageScoreFilter(CurationFilter):
    """fastText language-ID score of the expected label >= threshold (local model file only)."""

    name = "language_score"

    def __init__(self, model_path: str, label: str, threshold: float, counter: Optional[TokenCounter] = None,
                 exclusion_writer: Optional[DiskWriter] = None) -> None:
        super().__init__(counter, exclusion_writer)
        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"fineweb2.language_model: fastText model not found: {model_path}")
        self.model_path, self.label, self.threshold = model_path, label, threshold
        self._model = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_model"] = None
        return state

    def drop_reason(self, doc):
        if self._model is None:
            import fasttext

            self._model = fasttext.load_model(self.model_path)
        labels, scores = self._model.predict(doc.text.replace("\n", " "), k=5)
        score = dict(zip(labels, scores)).get(self.label, 0.0)
        doc.metadata["language_score"] = round(float(score), 4)
        return "language_score" if score < self.threshold else None


# --------------------------------------------------------------------------- selection


class TypeAndLengthFilter(CurationFilter):
    """Drops the configured content types and passages under ``min_tokens`` (recipe step 7)."""

    name = "type_filter"

    def __init__(self, drop_types: List[str], min_tokens: int, counter: Optional[TokenCounter] = None,
                 exclusion_writer: Optional[DiskWriter] = None) -> None:
        super().__init__(counter, exclusion_writer)
        self.drop_types, self.min_tokens = set(drop_types), min_tokens

    def drop_reason(self, doc):
        labels = doc.metadata.get("labels")
        if labels is None:
            return "unlabelled"
        if labels["type"] in self.drop_types:
            return f"type:{labels['type']}"
        if self.tokens(doc) < self.min_tokens:
            return "too_few_tokens"
        return None


class QualityUpsampler(CurationStep):
    """Sets ``upsample_factor`` on every passage of an article from the article's quality ratio.

    An article's passages are adjacent in a task's stream (one document is read, segmented
    and extracted by one task), so they are grouped here as consecutive runs of ``article_id``.
    Articles with factor 0 are dropped; copies are made at mixing time.
    """

    name = "quality_upsample"

    def __init__(self, cfg, counter: Optional[TokenCounter] = None, exclusion_writer: Optional[DiskWriter] = None) -> None:
        super().__init__(counter, exclusion_writer)
        self.cfg = cfg

    def run(self, data, rank: int = 0, world_size: int = 1):
        group: List[Document] = []
        with self.saving_rejects(rank):
            for doc in data or ():
                if not is_curated(doc):
                    self.stat_update("passthrough")
                    yield doc
                    continue
                if group and doc.metadata.get("article_id") != group[0].metadata.get("article_id"):
                    yield from self._emit(group)
                    group = []
                self.count_in(doc)
                group.append(doc)
            if group:
                yield from self._emit(group)

    def _emit(self, group: List[Document]):
        from mcbio.data.curation.upsample import quality_ratio, upsampling_factor

        ratio = quality_ratio((d.metadata["labels"] for d in group), self.cfg.edu_min, self.cfg.cont_min)
        factor = upsampling_factor(ratio, self.cfg)
        self.stat_update("articles")
        self.stat_update(f"articles_factor/{factor:g}")
        for doc in group:
            doc.metadata["quality_ratio"] = round(ratio, 4)
            doc.metadata["upsample_factor"] = factor
            if factor <= 0:
                self.drop(doc, "quality_ratio_zero")
                continue
            self.count_kept(doc)
            self.stat_update("tokens_effective", value=int(round(self.tokens(doc) * factor)), unit="doc")
            yield doc
