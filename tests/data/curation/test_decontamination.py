"""Test-split decontamination: word n-grams, the overlap filter, its reports and its launch check."""

from __future__ import annotations

import gzip
import json
import pickle
from pathlib import Path

import pytest
from datatrove.data import Document

from mcbio.config.curation import CurationRunConfig
from mcbio.config.loader import ConfigError, load_config
from mcbio.data.curation.decontamination import (
    OverlapFilter,
    TestSplitIndex,
    merge_overlap_reports,
    split_texts,
    word_ngrams,
)
from mcbio.data.curation.steps import rejects_writer
from mcbio.evaluate.tasks import TaskSpec
from mcbio.jsonl import iter_jsonl

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "experiments/curation/config.yaml"

# 22 words: the one test example that documents below copy from (example 1 of task "tiny").
TEST_TEXT = ("Le patient âgé de soixante ans présente une hépatite aiguë avec ictère fébrile "
             "et douleurs abdominales diffuses depuis trois semaines environ")
OTHER_TEST = "Une étude rétrospective de cohorte portant sur deux cents enfants suivis pour asthme sévère en ville"
TEST_WORDS = TEST_TEXT.split()


def doc(text: str, id_: str, group: str = "articles", curate: bool = True) -> Document:
    return Document(text=text, id=id_, metadata={"curate": curate, "mix_group": group})


def span(start: int, n: int) -> str:
    return " ".join(TEST_WORDS[start:start + n])


def tiny_filter(tmp_path: Path, **kw) -> OverlapFilter:
    index = TestSplitIndex({"tiny": [OTHER_TEST, TEST_TEXT]}, ngram=13)
    return OverlapFilter(["tiny"], ngram=13, index=index, **kw)


# --------------------------------------------------------------------------- word n-grams


def test_word_ngrams_ignore_case_and_punctuation_and_keep_accented_words():
    plain = word_ngrams("le patient présente une hépatite", 5)
    assert len(plain) == 1
    assert word_ngrams("Le PATIENT, « présente » une... HÉPATITE !", 5) == plain
    # Accented letters are word characters: "hépatite aiguë" is 2 words, one bigram (not h / patite / aigu).
    assert len(word_ngrams("hépatite aiguë", 2)) == 1
    assert word_ngrams("hépatite aiguë", 2) == word_ngrams("HÉPATITE AIGUË", 2)
    # A decomposed accent (e + U+0301) is the same word as the composed one.
    assert word_ngrams("he\u0301patite aigue\u0308", 2) == word_ngrams("hépatite aiguë", 2)
    assert word_ngrams("un deux trois", 2) != word_ngrams("un deux quatre", 2)


def test_word_ngrams_need_n_words():
    assert word_ngrams("trois mots seulement", 4) == set()
    assert word_ngrams("", 1) == set()
    assert len(word_ngrams("quatre mots tout juste", 4)) == 1
    assert len(word_ngrams(" ".join(TEST_WORDS), 13)) == len(TEST_WORDS) - 12


def test_word_ngram_hashes_are_stable_across_processes():
    # blake2b-64 of "le patient présente une hépatite", computed once: Python's salted hash() would differ.
    assert word_ngrams("le patient présente une hépatite", 5) == {1080320373097716317}


# --------------------------------------------------------------------------- the filter


def test_a_document_sharing_13_words_with_a_test_example_is_dropped_and_reported(tmp_path):
    rejects, reports = tmp_path / "rejects", tmp_path / "decontamination"
    step = tiny_filter(tmp_path, exclusion_writer=rejects_writer(str(rejects), OverlapFilter.name),
                       report_dir=str(reports))
    # 13 test words, other case and punctuation, inside unrelated words.
    copied = "Observation clinique : " + span(2, 13).upper().replace(" une ", ", une ; ") + " — suite du récit."
    docs = [
        doc(copied, "hit"),
        # 12 test words only, between words that do not continue the test text.
        doc("Observation : " + span(2, 12) + " bizarrement rien", "near"),
        # Sources that skip curation are checked too.
        doc("Notice : " + span(8, 13) + ".", "raw_hit", group="emea", curate=False),
        doc("Notice sans rapport avec les exemples de test, du tout, vraiment aucun rapport ici.", "raw_clean",
            group="emea", curate=False),
    ]
    kept = list(step.run(iter(docs), rank=2, world_size=4))
    assert [d.id for d in kept] == ["near", "raw_clean"]
    rows = [row for _, row in iter_jsonl(rejects / "overlap" / "00002.jsonl.gz")]
    assert [(r["id"], r["metadata"]["filter_reason"]) for r in rows] == [("hit", "overlap"), ("raw_hit", "overlap")]
    stats = step.stats
    assert stats["in"].total == 4 and stats["kept"].total == 2 and stats["dropped/overlap"].total == 2
    assert stats["dropped_by/tiny"].total == 2 and stats["in/emea"].total == 2
    assert stats["dropped_group/emea"].total == 1 and stats["dropped_group/articles"].total == 1
    tokens = {d.id: d.metadata["n_tokens"] for d in docs}
    assert stats["tokens_dropped"].total == tokens["hit"] + tokens["raw_hit"]
    report = json.loads((reports / "00002.json").read_text())
    assert report["ngram"] == 13 and report["split"] == "test"
    assert report["tasks"] == {"tiny": {"examples": 2, "examples_hit": [1]}}
    assert report["documents"]["emea"] == {"in": 2, "dropped": 1, "tokens_in": tokens["raw_hit"] + tokens["raw_clean"],
                                           "tokens_dropped": tokens["raw_hit"]}
    assert report["documents"]["articles"]["in"] == 2 and report["documents"]["articles"]["dropped"] == 1
    assert report["dropped_by_task"] == {"tiny": 2}


def test_the_index_is_built_in_the_worker_from_declared_tasks_and_left_out_of_the_pickle(tmp_path):
    data = tmp_path / "tiny"
    data.mkdir()
    for split in ("train", "dev", "test"):
        (data / f"{split}.jsonl").write_text("".join(
            json.dumps({"text": t, "label": "x"}, ensure_ascii=False) + "\n" for t in (OTHER_TEST, TEST_TEXT)),
            encoding="utf-8")
    spec = TaskSpec(name="tiny", type="single_label", format="jsonl", root=str(data),
                    splits={s: f"{s}.jsonl" for s in ("train", "dev", "test")})
    step = OverlapFilter(["tiny"], "test", None, 13, declared_tasks={"tiny": spec})
    worker = pickle.loads(pickle.dumps(step))  # as datatrove ships it
    assert [d.id for d in worker.run(iter([doc(span(0, 13), "hit"), doc(span(0, 12), "near")]))] == ["near"]
    assert worker.index.sizes == {"tiny": 2} and len(worker.index) == len(word_ngrams(TEST_TEXT, 13)) + \
        len(word_ngrams(OTHER_TEST, 13))
    assert worker._built_index is not None and pickle.loads(pickle.dumps(worker))._built_index is None


def test_the_index_lists_every_example_holding_an_ngram():
    index = TestSplitIndex({"a": [TEST_TEXT, OTHER_TEST, TEST_TEXT + " encore"], "b": [span(3, 15)]}, ngram=13)
    assert index.sizes == {"a": 3, "b": 1}
    assert index.hits(span(3, 13)) == {"a": {0, 2}, "b": {0}}
    assert index.hits(OTHER_TEST) == {"a": {1}}
    assert index.hits(span(3, 12)) == {}


def test_reports_of_two_ranks_merge_with_test_examples_counted_once(tmp_path):
    from mcbio.pipelines.curation import CurationPaths, collect_stats

    reports = tmp_path / "decontamination"
    index = TestSplitIndex({"tiny": [OTHER_TEST, TEST_TEXT, "un exemple bien trop court"]}, ngram=13)
    step = OverlapFilter(["tiny"], ngram=13, index=index, report_dir=str(reports))
    list(step.run(iter([doc(TEST_TEXT + " " + OTHER_TEST, "a"), doc("rien à voir", "b")]), rank=0))
    list(step.run(iter([doc(TEST_TEXT, "c", group="e3c", curate=False)]), rank=1))
    assert json.loads((reports / "00000.json").read_text())["tasks"]["tiny"]["examples_hit"] == [0, 1]
    # Example 1 hit again on rank 1: the union counts it once (not 3, nor rank 1's alone).
    assert json.loads((reports / "00001.json").read_text())["tasks"]["tiny"]["examples_hit"] == [1]
    merged = merge_overlap_reports(reports)
    assert merged["ranks"] == 2 and merged["ngram"] == 13
    assert merged["tasks"] == {"tiny": {"examples": 3, "examples_hit": 2, "share_hit": 2 / 3}}
    assert merged["dropped_by_task"] == {"tiny": 2}
    assert merged["documents"]["articles"]["in"] == 2 and merged["documents"]["articles"]["dropped"] == 1
    assert merged["documents"]["e3c"]["in"] == 1 and merged["documents"]["e3c"]["dropped"] == 1
    assert merged["totals"]["in"] == 3 and merged["totals"]["dropped"] == 2 and merged["totals"]["examples_hit"] == 2
    # curation_stats.json carries it under "decontamination".
    assert collect_stats(CurationRunConfig(), CurationPaths(tmp_path))["decontamination"] == merged


def test_the_select_stage_starts_with_the_overlap_filter_only_when_enabled(tmp_path):
    from mcbio.data.curation.chain import selection_steps

    cfg = CurationRunConfig()
    assert not any(isinstance(s, OverlapFilter) for s in selection_steps(cfg, None, None, str(tmp_path / "rejects")))
    cfg.decontamination.enabled, cfg.decontamination.tasks = True, ["quaero_emea"]
    cfg.paths.shared_data = "/data/shared"
    steps = selection_steps(cfg, str(tmp_path / "labeler.pkl"), None, str(tmp_path / "rejects"),
                            report_dir=str(tmp_path / "decontamination"))
    first = steps[0]
    assert isinstance(first, OverlapFilter) and type(steps[1]).__name__ == "ClassifierAnnotation"
    assert (first.tasks, first.split, first.ngram, first.shared_data) == (["quaero_emea"], "test", 13, "/data/shared")
    assert Path(first.exclusion_writer.output_folder.path) == tmp_path / "rejects" / "overlap"
    assert first.report_dir == str(tmp_path / "decontamination")


# --------------------------------------------------------------------------- real data


@pytest.mark.shared_data
def test_a_quaero_emea_test_document_is_dropped(shared_data, tmp_path):
    emea = sorted((shared_data / "quaero/corpus/test/EMEA").glob("*.txt"))
    k = 3
    morfitt = split_texts("morfitt", "test", str(shared_data))
    step = OverlapFilter(["quaero_emea", "morfitt"], "test", str(shared_data), 13,
                         report_dir=str(tmp_path / "decontamination"))
    docs = [doc(emea[k].read_text(encoding="utf-8"), "emea_test", group="emea", curate=False),
            doc(morfitt[5], "morfitt_test"),
            doc("Une phrase française sans rapport avec les corpus de test de l'évaluation.", "clean")]
    assert [d.id for d in step.run(iter(docs))] == ["clean"]
    assert step.stats["dropped_by/quaero_emea"].total >= 1 and step.stats["dropped_by/morfitt"].total >= 1
    report = json.loads((tmp_path / "decontamination" / "00000.json").read_text())
    assert report["tasks"]["quaero_emea"]["examples"] == len(emea) == 15
    assert k in report["tasks"]["quaero_emea"]["examples_hit"]
    assert report["tasks"]["morfitt"]["examples"] == len(morfitt) > 1000
    assert 5 in report["tasks"]["morfitt"]["examples_hit"]


def launch_cfg(shared_data: Path, tmp_path: Path, *extra: str) -> CurationRunConfig:
    return load_config(CurationRunConfig, CONFIG, ["preset=smoke", f"out_dir={tmp_path / 'run'}",
                                                   f"paths.shared_data={shared_data}",
                                                   "decontamination.enabled=true", *extra])


@pytest.mark.shared_data
def test_the_launch_check_names_a_wrong_task_before_submitting(shared_data, tmp_path):
    from mcbio.cluster.launcher import LaunchContext
    from mcbio.pipelines.curation import plan_curation

    ctx = LaunchContext("local", CONFIG)
    with pytest.raises(ConfigError) as err:
        plan_curation(launch_cfg(shared_data, tmp_path, "decontamination.tasks=[nope]"), ctx)
    assert "'decontamination.tasks': unknown task 'nope'" in str(err.value)
    with pytest.raises(ConfigError, match="'decontamination.tasks': decontamination is enabled but names no task"):
        plan_curation(launch_cfg(shared_data, tmp_path, "decontamination.tasks=[]"), ctx)
    plan = plan_curation(launch_cfg(shared_data, tmp_path, "decontamination.tasks=[quaero_emea]"), ctx)
    assert "select" in [s.name for s in plan.stages]
    assert not (tmp_path / "run").exists()  # planned, nothing run


@pytest.mark.shared_data
def test_the_select_stage_drops_test_text_and_reports_it(shared_data, tmp_path):
    """One real rank of the select stage (datatrove executor) on two passages, one a QUAERO EMEA test document."""
    from mcbio.pipelines.curation import CurationPaths, StageRank, collect_stats, run_stage_rank

    cfg = launch_cfg(shared_data, tmp_path, "decontamination.tasks=[quaero_emea]", "stages=[select]",
                     "executor.tasks=1", "annotation.llm_sample_fraction=1.0", "selection.min_tokens=1")
    paths = CurationPaths(Path(cfg.out_dir))
    paths.passages.mkdir(parents=True)
    labels = {"edu": 8, "cont": 8, "writ": 8, "term": 8, "type": "patient_case"}
    emea = sorted((shared_data / "quaero/corpus/test/EMEA").glob("*.txt"))[0].read_text(encoding="utf-8")
    rows = [{"id": "leak", "text": emea, "metadata": {"curate": False, "mix_group": "emea"}},
            {"id": "ok", "text": "Une patiente de 40 ans consulte pour une toux persistante depuis un mois.",
             "metadata": {"curate": True, "mix_group": "articles", "article_id": "A", "labels": labels}}]
    with gzip.open(paths.passages / "00000.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    run_stage_rank(StageRank(cfg, "select", 0, 1))
    curated = [row["id"] for f in sorted(paths.curated.rglob("*.jsonl.gz")) for _, row in iter_jsonl(f)]
    assert curated == ["ok"]
    report = collect_stats(cfg, paths)
    step = next(s for st in report["stages"] for s in st["steps"] if s["step"] == "overlap")
    assert step["in"] == 2 and step["dropped"] == {"overlap": 1} and step["extra"]["dropped_by/quaero_emea"] == 1
    assert report["rejects"]["overlap"] == 1
    dc = report["decontamination"]
    assert dc["tasks"]["quaero_emea"]["examples"] == 15 and dc["tasks"]["quaero_emea"]["examples_hit"] >= 1
    assert dc["documents"]["emea"]["dropped"] == 1 and dc["documents"]["articles"] == {
        "in": 1, "dropped": 0, "tokens_in": step["tokens_in"] - dc["documents"]["emea"]["tokens_in"],
        "tokens_dropped": 0}
