"""Dropped documents are saved by datatrove's exclusion writers under rejects/<step>/ and counted."""

from __future__ import annotations

from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter

from mcbio.config.curation import CurationRunConfig, UpsamplingConfig
from mcbio.data.curation.chain import passage_steps, selection_steps
from mcbio.data.curation.llm_tasks import ANNOTATE_TASK
from mcbio.data.curation.stats import reject_counts
from mcbio.data.curation.steps import (
    DatatroveFilter,
    DatatroveFormatter,
    LLMAnnotation,
    PassageFilter,
    QualityUpsampler,
    rejects_writer,
)
from mcbio.jsonl import iter_jsonl
from mcbio.llm import LLMBackend, LLMConfig

CASE = (
    "Une femme de 57 ans, sans antécédents pathologiques notables, était hospitalisée pour l'exploration "
    "d'un syndrome rectal avec des rectorragies évoluant depuis vingt jours. L'examen de la cavité buccale "
    "montrait des ulcérations de la lèvre inférieure et une lésion ulcéro-bourgeonnante du bord latéral de la "
    "langue. Le bilan biologique retrouvait une anémie et un syndrome inflammatoire, et la biopsie confirmait "
    "le diagnostic."
)
GOOD_LABELS = '{"edu": 8, "cont": 7, "writ": 9, "term": 6, "type": "patient_case"}'


def doc(text, id_, **meta):
    return Document(text=text, id=id_, metadata={"curate": True, **meta})


def saved(rejects: Path, step: str, rank: int = 0) -> list[dict]:
    return [row for _, row in iter_jsonl(rejects / step / f"{rank:05d}.jsonl.gz")]


def test_a_filter_saves_what_it_drops_through_its_exclusion_writer(tmp_path):
    rejects = tmp_path / "rejects"
    step = PassageFilter(30, 600, 0.6, exclusion_writer=rejects_writer(str(rejects), PassageFilter.name))
    assert isinstance(step, BaseFilter)
    raw = Document(text="court", id="raw", metadata={"curate": False})
    kept = list(step.run(iter([doc("Trop court.", "short"), doc(CASE, "good"), raw,
                               doc(" ".join(["mot"] * 601), "long")]), rank=3, world_size=4))
    assert [d.id for d in kept] == ["good", "raw"]
    rows = saved(rejects, "passage_filter", rank=3)
    assert [(r["id"], r["metadata"]["filter_reason"]) for r in rows] == [("short", "too_few_words"),
                                                                         ("long", "too_many_words")]
    assert rows[0]["text"] == "Trop court."
    assert reject_counts(rejects) == {"passage_filter": 2}
    # The counts the report reads are still this pipeline's.
    assert step.stats["in"].total == 3 and step.stats["kept"].total == 1 and step.stats["passthrough"].total == 1
    # Without a writer the documents are only counted.
    assert [d.id for d in PassageFilter(30, 600, 0.6).run(iter([doc("Trop court.", "short")]))] == []


class HalfWrongBackend(LLMBackend):
    """Labels every passage, except those saying MAUVAIS whose scores are always out of range."""

    name = "half_wrong"

    def generate(self, prompts, json_schema=None, task=None):
        assert task == ANNOTATE_TASK
        return [GOOD_LABELS.replace('"edu": 8', '"edu": 12') if "MAUVAIS" in p else GOOD_LABELS for p in prompts]


def test_llm_answers_set_aside_are_saved_with_every_answer(tmp_path):
    rejects = tmp_path / "rejects"
    step = LLMAnnotation(LLMConfig(backend="rules", max_retries=1, batch_size=2),
                         exclusion_writer=rejects_writer(str(rejects), LLMAnnotation.name))
    step._backend = HalfWrongBackend()
    docs = [doc(CASE, "a"), doc(CASE + " MAUVAIS", "b"), doc(CASE, "c")]
    out = list(step.run(iter(docs)))
    assert [d.id for d in out] == ["a", "c"] and all(d.metadata["labels"]["edu"] == 8 for d in out)
    (row,) = saved(rejects, "llm_annotate")
    meta = row["metadata"]
    assert row["id"] == "b" and meta["filter_reason"] == "llm_rejected" and meta["llm_task"] == ANNOTATE_TASK
    assert meta["llm_attempts"] == 2 and len(meta["llm_answers"]) == 2 and "out of range" in meta["llm_error"]
    assert step.stats["dropped/llm_rejected"].total == 1
    assert reject_counts(rejects) == {"llm_annotate": 1}


def test_upsampling_saves_the_articles_it_drops(tmp_path):
    rejects = tmp_path / "rejects"
    weak = {"edu": 2, "cont": 2, "writ": 5, "term": 5, "type": "patient_case"}
    good = {**weak, "edu": 8, "cont": 8}
    step = QualityUpsampler(UpsamplingConfig(), exclusion_writer=rejects_writer(str(rejects), QualityUpsampler.name))
    out = list(step.run(iter([doc(CASE, "a1", article_id="A", labels=weak), doc(CASE, "a2", article_id="A", labels=weak),
                              doc(CASE, "b1", article_id="B", labels=good)])))
    assert [d.id for d in out] == ["b1"]
    assert [(r["id"], r["metadata"]["filter_reason"]) for r in saved(rejects, "quality_upsample")] == [
        ("a1", "quality_ratio_zero"), ("a2", "quality_ratio_zero")]


def test_every_step_that_drops_documents_has_its_own_rejects_folder(tmp_path):
    rejects = str(tmp_path / "rejects")
    cfg = CurationRunConfig()
    steps = passage_steps(cfg, rejects, counter=None) + selection_steps(cfg, str(tmp_path / "labeler.pkl"), None,
                                                                         rejects)
    folders = {}
    for step in steps:
        writer = getattr(step, "exclusion_writer", None)
        if isinstance(step, DatatroveFormatter) or type(step).__name__ == "ClassifierAnnotation":
            continue  # these never drop a document
        assert writer is not None, step
        folders[str(step.name)] = Path(writer.output_folder.path)
    assert len(set(folders.values())) == len(folders)
    assert all(f.parent == Path(rejects) for f in folders.values())
    names = {f.name for f in folders.values()}
    assert {"segment", "llm_extract", "passage_filter", "jaccard_dedup", "llm_annotate", "type_filter",
            "quality_upsample", "GopherRepetitionFilter", "FineWebQualityFilter", "GopherQualityFilter"} == names
    # The filters drop through datatrove's BaseFilter, whose run writes the exclusion writer.
    filters = [s for s in steps if isinstance(s, DatatroveFilter) or s.name in {"passage_filter", "jaccard_dedup",
                                                                                 "type_filter"}]
    assert len(filters) == 6 and all(isinstance(s, BaseFilter) for s in filters)
