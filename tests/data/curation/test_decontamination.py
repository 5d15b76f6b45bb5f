"""Test-split decontamination: word n-grams, the boilerplate count, GPT-3's cut rule, reports, launch check."""

from __future__ import annotations

import dataclasses
import gzip
import json
import pickle
from pathlib import Path

import pytest
from datatrove.data import Document

from mcbio.config.curation import CurationRunConfig, DecontaminationConfig
from mcbio.config.loader import ConfigError, load_config
from mcbio.data.curation.decontamination import (
    OverlapCounts,
    OverlapFilter,
    TestSplitIndex,
    cut_collisions,
    document_frequencies,
    merge_overlap_reports,
    ngram_spans,
    split_texts,
    word_ngrams,
)
from mcbio.data.curation.steps import rejects_writer
from mcbio.evaluate.tasks import TaskSpec
from mcbio.jsonl import iter_jsonl

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "experiments/curation/config.yaml"

# 21 words: the one test example that documents below copy from (example 1 of task "tiny").
TEST_TEXT = ("Le patient âgé de soixante ans présente une hépatite aiguë avec ictère fébrile "
             "et douleurs abdominales diffuses depuis trois semaines environ")
OTHER_TEST = "Une étude rétrospective de cohorte portant sur deux cents enfants suivis pour asthme sévère en ville"
TEST_WORDS = TEST_TEXT.split()
# Leaflet boilerplate (22 words) that the test leaflet (example 2) shares with every pretraining leaflet.
BOILERPLATE = ("Tenir ce médicament hors de la vue et de la portée des enfants et ne pas utiliser après la date "
               "de péremption")
TEST_LEAFLET = "Notice du produit de test. " + BOILERPLATE + ". Prendre un comprimé le soir au coucher avec de l'eau."
RULES = DecontaminationConfig(enabled=True, tasks=["tiny"])


def doc(text: str, id_: str, group: str = "articles", curate: bool = True) -> Document:
    return Document(text=text, id=id_, metadata={"curate": curate, "mix_group": group})


def span(start: int, n: int) -> str:
    return " ".join(TEST_WORDS[start:start + n])


def filler(key: str, chars: int) -> str:
    """Text of about ``chars`` characters sharing no 13-gram with the test examples."""
    words, i = [], 0
    while sum(len(w) + 1 for w in words) < chars:
        words.append(f"{key}{i}")
        i += 1
    return " ".join(words)


def leaflet(i: int) -> Document:
    return doc(f"Notice du médicament numéro {i}. {BOILERPLATE}. " + filler(f"n{i}x", 300), f"leaflet{i}",
               group="emea", curate=False)


def tiny_index() -> TestSplitIndex:
    return TestSplitIndex({"tiny": [OTHER_TEST, TEST_TEXT, TEST_LEAFLET]}, ngram=13)


def decontaminate(tmp_path: Path, ranks: list[list[Document]], cfg: DecontaminationConfig = RULES,
                  index: TestSplitIndex | None = None, **kw) -> tuple[list[list[Document]], OverlapFilter]:
    """The two stages as the plan runs them: every rank counts, then every rank filters its own documents."""
    index = index or tiny_index()
    counts = tmp_path / "overlap_counts"
    for rank, docs in enumerate(ranks):
        list(OverlapCounts(cfg, str(counts), index=index).run(iter(docs), rank, len(ranks)))
    step = OverlapFilter(cfg, str(counts), len(ranks), index=index, **kw)
    return [list(step.run(iter(docs), rank, len(ranks))) for rank, docs in enumerate(ranks)], step


def colliding_left(text: str, index: TestSplitIndex, boilerplate: set[int]) -> set[int]:
    """An independent check of the kept text: the non-boilerplate test n-grams it still holds."""
    return {h for h in word_ngrams(text, index.ngram) if h in index and h not in boilerplate}


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


def test_ngram_spans_point_at_the_words_of_the_original_text():
    text = "Avant : he\u0301patite  aiguë, ICTÈRE fébrile."
    spans = ngram_spans(text, 2)
    assert [text[s:e] for _, s, e in spans] == ["Avant : he\u0301patite", "he\u0301patite  aiguë",
                                               "aiguë, ICTÈRE", "ICTÈRE fébrile"]
    assert {h for h, _, _ in spans} == word_ngrams("avant hépatite aiguë ictère fébrile", 2)


# --------------------------------------------------------------------------- the cut rule


def test_a_collision_is_cut_with_its_window_widened_to_whole_words():
    text = "aaaa bbbb XXXX cccc dddd"
    start = text.index("XXXX")
    # 3 characters each side reach into "bbbb" and "cccc": whole words go.
    assert cut_collisions(text, [(start, start + 4)], 3, 0, 10).text == "aaaa\n\ndddd"
    assert cut_collisions(text, [(start, start + 4)], 0, 0, 10).text == "aaaa bbbb\n\ncccc dddd"
    # A window ending on a space takes no more; windows that overlap merge: one cut, two pieces.
    cut = cut_collisions(text, [(5, 9), (10, 14)], 1, 0, 10)
    assert (cut.text, cut.pieces) == ("aaaa\n\ncccc dddd", 2)
    cut = cut_collisions(text, [(5, 9), (15, 19)], 0, 0, 10)
    assert (cut.text, cut.pieces) == ("aaaa\n\nXXXX\n\ndddd", 3)


def test_pieces_shorter_than_the_minimum_go_and_a_document_with_too_many_pieces_is_dropped():
    left, right = filler("g", 250), filler("d", 120)
    text = f"{left} XXXX {right}"
    start = text.index("XXXX")
    cut = cut_collisions(text, [(start, start + 4)], 10, 200, 10)
    # The right piece (under 200 characters) goes; the left one loses its last 9 characters, to a word's start.
    assert cut.pieces == 2 and left.startswith(cut.text) and cut.text.split() == left.split()[:len(cut.text.split())]
    assert 9 <= len(left) - len(cut.text) <= 9 + 4
    # Nothing long enough left: dropped.
    assert cut_collisions(text, [(start, start + 4)], 10, 300, 10).text is None
    # 11 collisions 100 characters apart: 12 pieces > 10 -> dropped; 12 allowed -> cut.
    blocks = [filler(f"b{i}x", 100) for i in range(12)]
    text = " XXXX ".join(blocks)
    spans = [(i, i + 4) for i in range(len(text)) if text.startswith("XXXX", i)]
    assert len(spans) == 11
    assert cut_collisions(text, spans, 0, 0, 10) == type(cut)(None, 12)
    assert cut_collisions(text, spans, 0, 0, 11) == type(cut)(None, 12)
    assert cut_collisions(text, spans, 0, 0, 12).text == "\n\n".join(blocks)


# --------------------------------------------------------------------------- the filter


def test_boilerplate_in_every_training_document_drops_none_while_a_copied_test_paragraph_is_cut(tmp_path):
    """Issue 20: 12 leaflets share a 22-word boilerplate sentence with the test leaflet; one article copies
    a test paragraph. The leaflets stay whole; the paragraph (and 200 characters around it) goes."""
    rejects = tmp_path / "rejects"
    before, after = filler("avant", 600), filler("apres", 600)
    copier = doc(f"{before}\n\n{TEST_TEXT}.\n\n{after}", "copier")
    leaflets = [leaflet(i) for i in range(12)]
    texts = {d.id: d.text for d in [*leaflets, copier]}
    (kept,), step = decontaminate(tmp_path, [[*leaflets, copier]], report_dir=str(tmp_path / "reports"),
                                  exclusion_writer=rejects_writer(str(rejects), OverlapFilter.name))
    assert [d.id for d in kept] == list(texts)
    assert all(d.text == texts[d.id] for d in kept[:-1])
    out = kept[-1]
    assert colliding_left(out.text, step.index, step.boilerplate) == set()
    assert out.text.startswith(before[:300]) and out.text.endswith(after[-300:])
    assert "hépatite" not in out.text and len(out.text) < len(texts["copier"]) - len(TEST_TEXT) - 2 * 190
    assert out.metadata["n_tokens"] == step.counter(out.text) and out.metadata["overlap_cut_chars"] > 400
    assert not list(rejects.rglob("*.jsonl.gz"))  # nothing dropped
    stats = step.stats
    assert stats["in"].total == 13 and stats["kept"].total == 13 and stats["cut"].total == 1
    assert stats["cut_by/tiny"].total == 1 and "dropped/overlap" not in stats.stats
    assert stats["tokens_in"].total == stats["tokens_kept"].total + stats["tokens_cut"].total
    report = merge_overlap_reports(tmp_path / "reports")
    assert report["tasks"]["tiny"] | {"boilerplate_share_max": None} == {
        "examples": 3, "examples_hit": 2, "share_hit": 2 / 3, "examples_colliding": 1,
        "examples_overlapping_after": 0, "examples_boilerplate_only": 1, "boilerplate_share_max": None}
    # The boilerplate is 10 of the test leaflet's n-grams.
    assert report["tasks"]["tiny"]["boilerplate_share_max"] == pytest.approx(10 / len(word_ngrams(TEST_LEAFLET, 13)))
    assert report["documents"]["emea"] | {"tokens_in": 0, "tokens_kept": 0} == {
        "in": 12, "dropped": 0, "cut": 0, "tokens_in": 0, "tokens_dropped": 0, "tokens_cut": 0, "chars_cut": 0,
        "tokens_kept": 0, "share_kept": 1.0}
    assert report["documents"]["articles"]["cut"] == 1 and report["documents"]["articles"]["share_kept"] < 1.0
    assert report["boilerplate"] == {"test_ngrams": len(step.index), "test_ngrams_in_corpus": 10 + 9,
                                     "boilerplate_ngrams": 10, "documents_counted": 13}


def test_a_test_ngram_in_ten_documents_is_not_boilerplate_and_in_eleven_it_is(tmp_path):
    (kept,), step = decontaminate(tmp_path / "ten", [[leaflet(i) for i in range(10)]])
    assert [d.id for d in kept] == [] and step.stats["dropped/overlap"].total == 10  # nothing left once cut
    (kept,), step = decontaminate(tmp_path / "eleven", [[leaflet(i) for i in range(11)]])
    assert len(kept) == 11 and "cut" not in step.stats.stats
    # The frequency bound is the config's.
    (kept,), _ = decontaminate(tmp_path / "strict", [[leaflet(i) for i in range(11)]],
                               dataclasses.replace(RULES, max_document_frequency=11))
    assert kept == []


def test_a_document_with_more_than_ten_colliding_passages_is_dropped_to_rejects(tmp_path):
    rejects = tmp_path / "rejects"
    blocks = [filler(f"b{i}x", 450) for i in range(12)]
    scattered = doc(f" {span(0, 13)} ".join(blocks), "scattered", group="e3c", curate=False)
    (kept,), step = decontaminate(tmp_path, [[scattered]], report_dir=str(tmp_path / "reports"),
                                  exclusion_writer=rejects_writer(str(rejects), OverlapFilter.name))
    assert kept == []
    rows = [row for _, row in iter_jsonl(rejects / "overlap" / "00000.jsonl.gz")]
    assert [(r["id"], r["metadata"]["filter_reason"]) for r in rows] == [("scattered", "overlap")]
    report = merge_overlap_reports(tmp_path / "reports")
    assert report["documents"]["e3c"]["dropped"] == 1 and report["dropped_by_task"] == {"tiny": 1}
    assert step.stats["tokens_dropped"].total == step.stats["tokens_in"].total
    # Allowed 12 pieces, the same document is cut instead.
    (kept,), _ = decontaminate(tmp_path / "lenient", [[scattered]], dataclasses.replace(RULES, max_pieces=12))
    assert [d.id for d in kept] == ["scattered"]


def test_a_collision_made_by_joining_two_pieces_is_cut_too(tmp_path):
    """The first 6 test words end one piece and the next 7 start the other: joined, they are a test 13-gram."""
    other = " ".join(OTHER_TEST.split()[:13])
    text = f"{filler('a', 300)} {span(0, 6)} {other} {span(6, 7)} {filler('b', 300)}"
    cfg = dataclasses.replace(RULES, window_chars=0, min_piece_chars=0)
    (kept,), step = decontaminate(tmp_path, [[doc(text, "joined")]], cfg, report_dir=str(tmp_path / "reports"))
    assert colliding_left(kept[0].text, step.index, step.boilerplate) == set()
    assert merge_overlap_reports(tmp_path / "reports")["tasks"]["tiny"]["examples_overlapping_after"] == 0
    assert word_ngrams(text, 13) & word_ngrams(TEST_TEXT, 13) == set()  # the test text was never there whole


def test_boilerplate_split_across_ranks_is_counted_over_the_whole_corpus(tmp_path):
    """6 leaflets per rank: each rank alone would see 6 documents (<= 10), the corpus has 12."""
    ranks = [[leaflet(i) for i in range(6)] + [doc(TEST_TEXT, "copy")], [leaflet(i) for i in range(6, 12)]]
    (kept0, kept1), step = decontaminate(tmp_path, ranks, report_dir=str(tmp_path / "reports"))
    assert [d.id for d in kept0] == [f"leaflet{i}" for i in range(6)] and len(kept1) == 6
    counts = [json.loads((tmp_path / "overlap_counts" / f"0000{r}.json").read_text()) for r in (0, 1)]
    boilerplate = word_ngrams(BOILERPLATE, 13)
    assert all(counts[r]["frequencies"][str(h)] == 6 for r in (0, 1) for h in boilerplate)
    frequencies, documents = document_frequencies(tmp_path / "overlap_counts", 2, step._settings())
    assert documents == 13 and all(frequencies[h] == 12 for h in boilerplate)
    report = merge_overlap_reports(tmp_path / "reports")
    assert report["ranks"] == 2 and report["documents"]["emea"]["in"] == 12
    assert report["documents"]["articles"]["dropped"] == 1 and report["tasks"]["tiny"]["examples_boilerplate_only"] == 1


def test_select_refuses_missing_or_foreign_counts(tmp_path):
    index = tiny_index()
    counts = tmp_path / "overlap_counts"
    list(OverlapCounts(RULES, str(counts), index=index).run(iter([leaflet(0)]), 0, 2))
    step = OverlapFilter(RULES, str(counts), 2, index=index)
    with pytest.raises(FileNotFoundError, match="rank\\(s\\) 00001.json: the overlap_counts stage"):
        list(step.run(iter([leaflet(0)]), 0, 2))
    list(OverlapCounts(dataclasses.replace(RULES, ngram=12), str(counts),
                       index=TestSplitIndex({"tiny": [TEST_TEXT]}, 12)).run(iter([]), 1, 2))
    with pytest.raises(ValueError, match="00001.json: counted with .*'ngram': 12.*rerun the overlap_counts stage"):
        list(step.run(iter([leaflet(0)]), 0, 2))


def test_the_index_is_built_in_the_worker_from_declared_tasks_and_left_out_of_the_pickle(tmp_path):
    data = tmp_path / "tiny"
    data.mkdir()
    for split in ("train", "dev", "test"):
        (data / f"{split}.jsonl").write_text("".join(
            json.dumps({"text": t, "label": "x"}, ensure_ascii=False) + "\n" for t in (OTHER_TEST, TEST_TEXT)),
            encoding="utf-8")
    spec = TaskSpec(name="tiny", type="single_label", format="jsonl", root=str(data),
                    splits={s: f"{s}.jsonl" for s in ("train", "dev", "test")})
    docs = [doc(span(0, 13), "hit"), doc(span(0, 12), "near")]
    counter = pickle.loads(pickle.dumps(OverlapCounts(RULES, str(tmp_path / "counts"), declared_tasks={"tiny": spec})))
    list(counter.run(iter(docs)))
    step = OverlapFilter(RULES, str(tmp_path / "counts"), 1, declared_tasks={"tiny": spec})
    worker = pickle.loads(pickle.dumps(step))  # as datatrove ships it
    assert [d.id for d in worker.run(iter(docs))] == ["near"]
    assert worker.index.sizes == {"tiny": 2} and len(worker.index) == len(word_ngrams(TEST_TEXT, 13)) + \
        len(word_ngrams(OTHER_TEST, 13))
    assert worker._built_index is not None and worker._boilerplate is not None
    shipped = pickle.loads(pickle.dumps(worker))
    assert shipped._built_index is None and shipped._boilerplate is None


def test_the_index_lists_every_example_holding_an_ngram():
    index = TestSplitIndex({"a": [TEST_TEXT, OTHER_TEST, TEST_TEXT + " encore"], "b": [span(3, 15)]}, ngram=13)
    assert index.sizes == {"a": 3, "b": 1}
    assert index.hits(span(3, 13)) == {"a": {0, 2}, "b": {0}}
    assert index.hits(OTHER_TEST) == {"a": {1}}
    assert index.hits(span(3, 12)) == {}
    # Example b/0 has 3 n-grams, 1 of them given: a third of it.
    assert index.largest_share(word_ngrams(span(3, 13), 13)) == {"a": 1 / 9, "b": 1 / 3}


def test_reports_of_two_ranks_merge_with_test_examples_counted_once(tmp_path):
    from mcbio.pipelines.curation import CurationPaths, collect_stats

    reports = tmp_path / "decontamination"
    index = TestSplitIndex({"tiny": [OTHER_TEST, TEST_TEXT, "un exemple bien trop court"]}, ngram=13)
    ranks = [[doc(TEST_TEXT + " " + OTHER_TEST, "a"), doc("rien à voir", "b")],
             [doc(TEST_TEXT, "c", group="e3c", curate=False)]]
    decontaminate(tmp_path, ranks, index=index, report_dir=str(reports))
    assert json.loads((reports / "00000.json").read_text())["tasks"]["tiny"]["examples_colliding"] == [0, 1]
    # Example 1 hit again on rank 1: the union counts it once (not 3, nor rank 1's alone).
    assert json.loads((reports / "00001.json").read_text())["tasks"]["tiny"]["examples_colliding"] == [1]
    merged = merge_overlap_reports(reports)
    assert merged["ranks"] == 2 and merged["ngram"] == 13 and merged["rules"]["max_pieces"] == 10
    assert merged["tasks"] == {"tiny": {"examples": 3, "examples_hit": 2, "share_hit": 2 / 3, "examples_colliding": 2,
                                        "examples_overlapping_after": 0, "examples_boilerplate_only": 0,
                                        "boilerplate_share_max": 0.0}}
    assert merged["dropped_by_task"] == {"tiny": 2} and merged["cut_by_task"] == {}
    assert merged["documents"]["articles"]["in"] == 2 and merged["documents"]["articles"]["dropped"] == 1
    assert merged["documents"]["e3c"]["in"] == 1 and merged["documents"]["e3c"]["dropped"] == 1
    assert merged["totals"]["in"] == 3 and merged["totals"]["dropped"] == 2 and merged["totals"]["examples_hit"] == 2
    # curation_stats.json carries it under "decontamination".
    assert collect_stats(CurationRunConfig(), CurationPaths(tmp_path))["decontamination"] == merged


def test_reports_of_the_former_rule_still_merge(tmp_path):
    """Before the cut rule a rank reported hits and drops only: its after-views are unknown, not 0."""
    from mcbio.results.study_tables import overlap_table

    (tmp_path / "00000.json").write_text(json.dumps({
        "ngram": 13, "split": "test", "tasks": {"quaero_emea": {"examples": 15, "examples_hit": [1, 4]}},
        "documents": {"emea": {"in": 10, "dropped": 4, "tokens_in": 1000, "tokens_dropped": 250}},
        "dropped_by_task": {"quaero_emea": 4}}))
    merged = merge_overlap_reports(tmp_path)
    assert merged["rules"] is None and merged["tasks"]["quaero_emea"] == {
        "examples": 15, "examples_hit": 2, "share_hit": 2 / 15, "examples_colliding": 2,
        "examples_overlapping_after": None, "examples_boilerplate_only": None, "boilerplate_share_max": None}
    assert merged["documents"]["emea"]["tokens_kept"] == 750 and merged["documents"]["emea"]["cut"] == 0
    # The study's committed statistics are of this form (results/curation/laptop_study.json): unknowns show "--".
    table = overlap_table(merged, "cap", "tab:x")
    assert r"group emea & 10 & 4 & 0 & 1000 & 250 & 75.00 \\" in table
    assert r"test split EMEA & 15 & 2 & 2 & -- & -- & -- \\" in table and "Former rule" in table


def test_the_overlap_table_shows_what_each_group_lost_and_what_each_test_split_still_shares(tmp_path):
    from mcbio.results.study_tables import overlap_table

    leaflets = [leaflet(i) for i in range(12)]
    decontaminate(tmp_path, [[*leaflets, doc(f"{filler('a', 600)} {TEST_TEXT} {filler('b', 600)}", "copier")]],
                  report_dir=str(tmp_path / "reports"))
    stats = merge_overlap_reports(tmp_path / "reports")
    table = overlap_table(stats, "cap", "tab:x")
    art = stats["documents"]["articles"]
    removed = art["tokens_cut"]
    assert removed > 0
    kept = f"{100 * (1 - removed / art['tokens_in']):.2f}"
    assert rf"group articles & 1 & 0 & 1 & {art['tokens_in']} & {removed} & {kept} \\" in table
    emea_tokens = stats["documents"]["emea"]["tokens_in"]
    assert rf"group emea & 12 & 0 & 0 & {emea_tokens} & 0 & 100.00 \\" in table
    share = f"{100 * 10 / len(word_ngrams(TEST_LEAFLET, 13)):.1f}"
    assert rf"test split tiny & 3 & 2 & 1 & 0 & 1 & {share} \\" in table
    assert "more than 10 pretraining documents is boilerplate" in table and "(10 of the 19 test 13-grams" in table


def test_the_overlap_counts_stage_runs_right_before_select_only_with_decontamination(tmp_path):
    from mcbio.data.curation.chain import selection_steps
    from mcbio.pipelines.curation import stage_tasks

    cfg = CurationRunConfig()
    cfg.executor.tasks = 3
    assert [s for s, _ in stage_tasks(cfg)] == ["passages", "select", "mix_pack"]
    assert not any(isinstance(s, OverlapFilter) for s in selection_steps(cfg, None, None, str(tmp_path / "rejects")))
    cfg.decontamination.enabled, cfg.decontamination.tasks = True, ["quaero_emea"]
    cfg.paths.shared_data = "/data/shared"
    assert stage_tasks(cfg) == [("passages", 3), ("overlap_counts", 3), ("select", 3), ("mix_pack", 1)]
    steps = selection_steps(cfg, str(tmp_path / "labeler.pkl"), None, str(tmp_path / "rejects"),
                            report_dir=str(tmp_path / "decontamination"), counts_dir=str(tmp_path / "counts"))
    first = steps[0]
    assert isinstance(first, OverlapFilter) and type(steps[1]).__name__ == "ClassifierAnnotation"
    assert (first.cfg, first.shared_data, first.counts_dir, first.count_ranks) == (
        cfg.decontamination, "/data/shared", str(tmp_path / "counts"), 3)
    assert Path(first.exclusion_writer.output_folder.path) == tmp_path / "rejects" / "overlap"
    assert first.report_dir == str(tmp_path / "decontamination")


@pytest.mark.parametrize("key,value", [("max_document_frequency", 0), ("max_pieces", 0), ("window_chars", -1),
                                       ("min_piece_chars", -5), ("ngram", 0)])
def test_a_rule_out_of_range_is_named(key, value):
    with pytest.raises(ConfigError, match=f"'decontamination.{key}' must be >= "):
        load_config(CurationRunConfig, CONFIG, ["decontamination.enabled=true", f"decontamination.{key}={value}"])


# --------------------------------------------------------------------------- real data


@pytest.mark.shared_data
def test_a_quaero_emea_test_document_is_removed(shared_data, tmp_path):
    emea = sorted((shared_data / "quaero/corpus/test/EMEA").glob("*.txt"))
    k = 3
    morfitt = split_texts("morfitt", "test", str(shared_data))
    cfg = dataclasses.replace(RULES, tasks=["quaero_emea", "morfitt"])
    index = TestSplitIndex.from_tasks(cfg.tasks, "test", str(shared_data))
    clean = "Une phrase française sans rapport avec les corpus de test de l'évaluation."
    docs = [doc(emea[k].read_text(encoding="utf-8"), "emea_test", group="emea", curate=False),
            doc(f"{filler('a', 400)}\n\n{morfitt[5]}\n\n{filler('b', 400)}", "morfitt_copy"), doc(clean, "clean")]
    (kept,), step = decontaminate(tmp_path, [docs], cfg, index, report_dir=str(tmp_path / "decontamination"))
    # The test leaflet is test text throughout: nothing is left of it. The abstract is cut out of its article.
    assert [d.id for d in kept] == ["morfitt_copy", "clean"] and kept[1].text == clean
    assert colliding_left(kept[0].text, index, step.boilerplate) == set() and morfitt[5][:80] not in kept[0].text
    assert step.stats["dropped_by/quaero_emea"].total == 1 and step.stats["cut_by/morfitt"].total == 1
    report = json.loads((tmp_path / "decontamination" / "00000.json").read_text())
    assert report["tasks"]["quaero_emea"]["examples"] == len(emea) == 15
    assert k in report["tasks"]["quaero_emea"]["examples_colliding"]
    assert report["tasks"]["morfitt"]["examples"] == len(morfitt) > 1000
    assert 5 in report["tasks"]["morfitt"]["examples_colliding"]
    assert report["tasks"]["morfitt"]["examples_overlapping_after"] == []


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
def test_the_counting_and_select_stages_remove_test_text_and_report_it(shared_data, tmp_path):
    """Real ranks of the overlap_counts and select stages (datatrove executor) on two passages, one a
    QUAERO EMEA test document; select refuses to run before the counts exist."""
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
    with pytest.raises(FileNotFoundError, match="the overlap_counts stage must run"):
        run_stage_rank(StageRank(cfg, "select", 0, 1))
    run_stage_rank(StageRank(cfg, "overlap_counts", 0, 1))
    assert json.loads((paths.overlap_counts / "00000.json").read_text())["documents"] == 2
    run_stage_rank(StageRank(cfg, "select", 0, 1))
    curated = [row["id"] for f in sorted(paths.curated.rglob("*.jsonl.gz")) for _, row in iter_jsonl(f)]
    assert curated == ["ok"]
    report = collect_stats(cfg, paths)
    assert [s["stage"] for s in report["stages"]] == ["overlap_counts", "select"]
    step = next(s for st in report["stages"] for s in st["steps"] if s["step"] == "overlap")
    assert step["in"] == 2 and step["dropped"] == {"overlap": 1} and step["extra"]["dropped_by/quaero_emea"] == 1
    assert report["rejects"]["overlap"] == 1
    dc = report["decontamination"]
    assert dc["tasks"]["quaero_emea"]["examples"] == 15 and dc["tasks"]["quaero_emea"]["examples_colliding"] == 1
    assert dc["tasks"]["quaero_emea"]["examples_overlapping_after"] == 0
    articles = step["tokens_in"] - dc["documents"]["emea"]["tokens_in"]
    assert dc["documents"]["emea"]["dropped"] == 1 and dc["documents"]["articles"] == {
        "in": 1, "dropped": 0, "cut": 0, "tokens_in": articles, "tokens_dropped": 0, "tokens_cut": 0, "chars_cut": 0,
        "tokens_kept": articles, "share_kept": 1.0}
