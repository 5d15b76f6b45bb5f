"""datatrove ``PipelineStep``s of the curation pipeline.

Every step counts, in datatrove's per-step stats: ``in``, ``kept``, ``dropped/<reason>``,
``tokens_in``, ``tokens_kept`` (and ``passthrough`` for documents of sources that are not
curated, which every curation step forwards untouched). :mod:`mcbio.data.curation.stats`
turns them into the report's table.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, List, Optional

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from mcbio.data.curation.text import TokenCounter, alpha_ratio, word_count


def is_curated(doc: Document) -> bool:
    return bool(doc.metadata.get("curate", True))


class CurationStep(PipelineStep):
    type = "🧬 CURATION"

    def __init__(self, counter: Optional[TokenCounter] = None) -> None:
        super().__init__()
        self.counter = counter or TokenCounter()

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

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
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


class RejectsLog:
    """Set-aside answers, one JSON line each, per (stage, rank): nothing is lost silently."""

    def __init__(self, folder: Optional[str], stage: str) -> None:
        self.folder = folder
        self.stage = stage

    def write(self, rank: int, record: dict) -> None:
        if not self.folder:
            return
        path = Path(self.folder) / self.stage / f"{rank:05d}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------- segmentation


class Segmenter(CurationStep):
    name = "segment"

    def __init__(self, target_tokens: int, counter: Optional[TokenCounter] = None) -> None:
        super().__init__(counter)
        self.target_tokens = target_tokens

    def process(self, doc):
        from mcbio.data.curation.segment import segment_text

        chunks = segment_text(doc.text, self.target_tokens, self.counter)
        if not chunks:
            self.count_dropped(doc, "empty")
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

    def __init__(self, llm_cfg, rejects_dir: Optional[str], counter: Optional[TokenCounter] = None) -> None:
        super().__init__(counter)
        self.llm_cfg = llm_cfg
        self.rejects = RejectsLog(rejects_dir, self.task)
        self._backend = None

    @property
    def backend(self):
        if self._backend is None:
            from mcbio.llm import build_backend

            self._backend = build_backend(self.llm_cfg)
        return self._backend

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_backend"] = None
        return state

    def wants(self, doc: Document) -> bool:
        return True

    def run(self, data, rank: int = 0, world_size: int = 1):
        # Documents leave in the order they came (later steps group an article's passages
        # by adjacency), so skipped ones wait in ``pending`` with the batch.
        pending: List[tuple[Document, bool]] = []
        batch: List[Document] = []
        for doc in data or ():
            selected = is_curated(doc) and self.wants(doc)
            if not selected:
                self.stat_update("passthrough" if not is_curated(doc) else "not_sampled")
            else:
                self.count_in(doc)
                batch.append(doc)
            pending.append((doc, selected))
            if len(batch) >= self.llm_cfg.batch_size:
                yield from self._flush(pending, batch, rank)
                pending, batch = [], []
        if pending:
            yield from self._flush(pending, batch, rank)

    def _flush(self, pending, batch: List[Document], rank: int):
        answered = {id(d): out for d, out in zip(batch, self._answer(batch, rank))} if batch else {}
        for doc, selected in pending:
            if selected:
                yield from answered[id(doc)]
            else:
                yield doc

    def _answer(self, batch: List[Document], rank: int) -> List[List[Document]]:
        from mcbio.llm import generate_structured

        with self.track_time(unit="batch"):
            results = generate_structured(
                self.backend, [self.prompt(d) for d in batch], self.parse,
                self.schema if self.llm_cfg.guided_json else None, self.llm_cfg.max_retries, task=self.task,
            )
        out: List[List[Document]] = []
        for doc, res in zip(batch, results):
            self.stat_update("llm_attempts", value=res.attempts)
            if res.error is not None:
                self.count_dropped(doc, "llm_rejected")
                self.rejects.write(rank, {"id": doc.id, "task": self.task, "error": res.error,
                                          "attempts": res.attempts, "raw": res.raw})
                out.append([])
                continue
            out.append(list(self.accept(doc, res.value)))
        return out


class LLMExtraction(_BatchedLLMStep):
    """Chunk -> clean passages (one document each), with their fidelity to the chunk."""

    name = "llm_extract"

    def __init__(self, llm_cfg, max_words: int, prompt_name: str = "curation_extract",
                 rejects_dir: Optional[str] = None, counter: Optional[TokenCounter] = None,
                 fidelity_thresholds: Iterable[float] = (0.99, 0.95, 0.90, 0.80, 0.50)) -> None:
        from mcbio.data.curation.llm_tasks import EXTRACT_TASK

        self.fidelity_thresholds = tuple(fidelity_thresholds)

        self.task = EXTRACT_TASK
        super().__init__(llm_cfg, rejects_dir, counter)
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
            self.count_dropped(doc, "no_passage")
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


def in_llm_sample(doc_id: str, fraction: float, seed: int) -> bool:
    if fraction >= 1.0:
        return True
    h = hashlib.blake2b(f"{seed}:{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64 < fraction


class LLMAnnotation(_BatchedLLMStep):
    """Scores (edu, cont, writ, term) and content type of each sampled passage."""

    name = "llm_annotate"

    def __init__(self, llm_cfg, sample_fraction: float = 1.0, sample_seed: int = 0,
                 prompt_name: str = "curation_annotate", rejects_dir: Optional[str] = None,
                 counter: Optional[TokenCounter] = None) -> None:
        from mcbio.data.curation.llm_tasks import ANNOTATE_TASK

        self.task = ANNOTATE_TASK
        super().__init__(llm_cfg, rejects_dir, counter)
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
        self.count_kept(doc)
        yield doc


# --------------------------------------------------------------------------- filters


class PassageFilter(CurationStep):
    """30-600 words and >= 60 % alphabetic characters (recipe step 3)."""

    name = "passage_filter"

    def __init__(self, min_words: int, max_words: int, min_alpha_ratio: float,
                 counter: Optional[TokenCounter] = None) -> None:
        super().__init__(counter)
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

    def process(self, doc):
        reason = self.reason(doc.text)
        if reason:
            self.count_dropped(doc, reason)
            return
        self.count_kept(doc)
        yield doc


class JaccardDedup(CurationStep):
    """Drops a passage whose Jaccard similarity to one of the last ``window`` kept passages
    (in this task's stream, where an article's passages are adjacent) reaches ``threshold``."""

    name = "jaccard_dedup"

    def __init__(self, threshold: float, window: int, ngram: int = 1, counter: Optional[TokenCounter] = None) -> None:
        super().__init__(counter)
        self.threshold, self.window, self.ngram = threshold, window, ngram

    def run(self, data, rank: int = 0, world_size: int = 1):
        from mcbio.data.curation.dedup import WindowDeduplicator

        self._dedup = WindowDeduplicator(self.threshold, self.window, self.ngram)
        yield from super().run(data, rank, world_size)

    def process(self, doc):
        dup, _ = self._dedup.is_duplicate(doc.text)
        if dup:
            self.count_dropped(doc, "near_duplicate")
            return
        self.count_kept(doc)
        yield doc


class DatatroveFilter(CurationStep):
    """Runs one of datatrove's filters (Gopher, FineWeb...) with this pipeline's accounting."""

    def __init__(self, inner, counter: Optional[TokenCounter] = None) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", type(inner).__name__)
        super().__init__(counter)

    def process(self, doc):
        result = self.inner.filter(doc)
        ok, reason = (result, None) if isinstance(result, bool) else (result[0], result[1] if len(result) > 1 else None)
        if not ok:
            self.count_dropped(doc, f"{type(self.inner).__name__}:{reason or 'rejected'}")
            return
        self.count_kept(doc)
        yield doc


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


class LanguageScoreFilter(CurationStep):
    """fastText language-ID score of the expected label >= threshold (local model file only)."""

    name = "language_score"

    def __init__(self, model_path: str, label: str, threshold: float, counter: Optional[TokenCounter] = None) -> None:
        super().__init__(counter)
        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"fineweb2.language_model: fastText model not found: {model_path}")
        self.model_path, self.label, self.threshold = model_path, label, threshold
        self._model = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_model"] = None
        return state

    def process(self, doc):
        if self._model is None:
            import fasttext

            self._model = fasttext.load_model(self.model_path)
        labels, scores = self._model.predict(doc.text.replace("\n", " "), k=5)
        score = dict(zip(labels, scores)).get(self.label, 0.0)
        doc.metadata["language_score"] = round(float(score), 4)
        if score < self.threshold:
            self.count_dropped(doc, "language_score")
            return
        self.count_kept(doc)
        yield doc


# --------------------------------------------------------------------------- selection


class TypeAndLengthFilter(CurationStep):
    """Drops the configured content types and passages under ``min_tokens`` (recipe step 7)."""

    name = "type_filter"

    def __init__(self, drop_types: List[str], min_tokens: int, counter: Optional[TokenCounter] = None) -> None:
        super().__init__(counter)
        self.drop_types, self.min_tokens = set(drop_types), min_tokens

    def process(self, doc):
        labels = doc.metadata.get("labels")
        if labels is None:
            self.count_dropped(doc, "unlabelled")
            return
        if labels["type"] in self.drop_types:
            self.count_dropped(doc, f"type:{labels['type']}")
            return
        if self.tokens(doc) < self.min_tokens:
            self.count_dropped(doc, "too_few_tokens")
            return
        self.count_kept(doc)
        yield doc


class QualityUpsampler(CurationStep):
    """Sets ``upsample_factor`` on every passage of an article from the article's quality ratio.

    An article's passages are adjacent in a task's stream (one document is read, segmented
    and extracted by one task), so they are grouped here as consecutive runs of ``article_id``.
    Articles with factor 0 are dropped; copies are made at mixing time.
    """

    name = "quality_upsample"

    def __init__(self, cfg, counter: Optional[TokenCounter] = None) -> None:
        super().__init__(counter)
        self.cfg = cfg

    def run(self, data, rank: int = 0, world_size: int = 1):
        group: List[Document] = []
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
                self.count_dropped(doc, "quality_ratio_zero")
                continue
            self.count_kept(doc)
            self.stat_update("tokens_effective", value=int(round(self.tokens(doc) * factor)), unit="doc")
            yield doc
