"""BRAT -> IOB2 (nested, crossing, discontinuous entities), segments, tables, HF datasets on disk."""

from __future__ import annotations

import pytest

from mcbio.evaluate.loaders import (
    BratEntity,
    brat_to_iob2,
    parse_ann,
    read_brat,
    read_hf_disk,
    read_table,
    split_segments,
)

# "douleurs intenses" (DISO) nests "douleurs" (DISO); "douleurs ... chroniques" is
# discontinuous; "moelle épinière" (ANAT) crosses "épinière et" (a shorter, crossing PROC).
TEXT = "Prialt traite les douleurs intenses , chroniques de la moelle épinière et du cerveau .\nLigne deux ."
ANN = """T1\tCHEM 0 6\tPrialt
#1\tAnnotatorNotes T1\tC1530575
T2\tDISO 18 35\tdouleurs intenses
T3\tDISO 18 26\tdouleurs
T4\tDISO 18 26;38 48\tdouleurs chroniques
T5\tANAT 55 70\tmoelle épinière
T6\tPROC 62 73\tépinière et
T7\tANAT 77 84\tcerveau
T8\tDISO 38 48;55 61\tchroniques moelle
"""


def tokens_tags(spans, tags, text=TEXT):
    return [(text[s:e], t) for (s, e), t in zip(spans, tags)]


@pytest.fixture()
def entities(tmp_path):
    (tmp_path / "doc.ann").write_text(ANN, encoding="utf-8")
    return parse_ann(tmp_path / "doc.ann")


def test_parse_ann_reads_fragments_and_skips_notes(entities):
    assert [e.id for e in entities] == ["T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8"]
    assert entities[3].fragments == ((18, 26), (38, 48))
    assert entities[3].length == 18


def test_nested_keeps_outermost_and_crossing_keeps_longer(entities):
    stats: dict[str, int] = {}
    spans, tags = brat_to_iob2(TEXT, entities, discontinuous="drop", stats=stats)
    got = dict(tokens_tags(spans, tags))
    assert got["douleurs"] == "B-DISO" and got["intenses"] == "I-DISO"  # T2, not nested T3
    assert got["moelle"] == "B-ANAT" and got["épinière"] == "I-ANAT"  # T5 (15 chars) beats crossing T6 (11)
    assert got["et"] == "O"
    assert got["chroniques"] == "O"  # discontinuous dropped
    assert stats == {"dropped_discontinuous": 2, "placed": 4, "dropped_overlap": 2}  # T1 T2 T5 T7


def test_discontinuous_fragments_placed_whole_when_free(entities):
    # Without T2/T3, the discontinuous T4 is the longest DISO on "douleurs" and is placed
    # as two fragments; T8 then overlaps T4's "chroniques" and is dropped whole.
    kept = [e for e in entities if e.id not in ("T2", "T3")]
    spans, tags = brat_to_iob2(TEXT, kept, discontinuous="fragments")
    got = tokens_tags(spans, tags)
    assert got[3] == ("douleurs", "B-DISO")
    assert got[4] == ("intenses", "O")
    assert got[6] == ("chroniques", "B-DISO")
    assert dict(got)["moelle"] == "B-ANAT"  # T8's second fragment was not placed


def test_discontinuous_span_policy_covers_the_gap(entities):
    kept = [e for e in entities if e.id == "T4"]
    spans, tags = brat_to_iob2(TEXT, kept, discontinuous="span")
    got = tokens_tags(spans, tags)
    assert [t for _, t in got[3:7]] == ["B-DISO", "I-DISO", "I-DISO", "I-DISO"]


def test_entity_boundary_inside_a_token_cuts_the_token():
    text = "l'aspirine ."
    spans, tags = brat_to_iob2(text, [BratEntity("T1", "CHEM", ((2, 10),))])
    assert tokens_tags(spans, tags, text) == [("l'", "O"), ("aspirine", "B-CHEM"), (".", "O")]


def test_segments_by_line_and_length_cap_avoid_cutting_entities(entities):
    spans, tags = brat_to_iob2(TEXT, entities)
    lines = split_segments(TEXT, spans, tags, "line", max_words=None)
    assert len(lines) == 2 and [TEXT[spans[i][0]:spans[i][1]] for i in lines[1][0]] == ["Ligne", "deux", "."]
    # A cap of 10 words would cut inside "moelle épinière" (tokens 9-10): the cut moves back to 9.
    capped = split_segments(TEXT, spans, tags, "document", max_words=10)
    assert [len(idx) for idx, _ in capped] == [9, 9]  # 18 tokens; cut at 9, not 10
    assert all(not seg_tags[0].startswith("I-") for _, seg_tags in capped)


def test_read_brat_folder_and_errors(tmp_path):
    (tmp_path / "a.txt").write_text(TEXT, encoding="utf-8")
    (tmp_path / "a.ann").write_text(ANN, encoding="utf-8")
    sentences = read_brat(tmp_path)
    assert len(sentences) == 2 and sentences[0][0][0] == "Prialt" and sentences[0][1][0] == "B-CHEM"
    (tmp_path / "b.txt").write_text("x", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="b.ann"):
        read_brat(tmp_path)
    (tmp_path / "b.ann").write_text("T1\tDISO 0 x\tx\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"b\.ann:1: malformed"):
        read_brat(tmp_path)


def test_read_table_tsv_and_jsonl(tmp_path):
    tsv = tmp_path / "d.tsv"
    tsv.write_text("id\tabstract\tspecialities\n1\tUn texte.\tvirology|immunology\n2\tAutre.\tsurgery\n", encoding="utf-8")
    assert read_table(tsv, "abstract", "specialities") == [("Un texte.", ["virology", "immunology"]), ("Autre.", ["surgery"])]
    with pytest.raises(ValueError, match="no column 'labels'"):
        read_table(tsv, "abstract", "labels")
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"text": "a", "label": 3}\n{"text": "b", "label": ["x", "y"]}\nnot json\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"d\.jsonl:3: invalid JSON"):
        read_table(jsonl, "text", "label")


def test_read_hf_disk_maps_class_label_ids_to_names(tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

    ner = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=["O", "B-X", "I-X"]))})
    DatasetDict({"train": Dataset.from_dict({"tokens": [["a", "b"]], "ner_tags": [[1, 2]]}, features=ner)}).save_to_disk(tmp_path / "ner")
    fields = {"tokens": "tokens", "tags": "ner_tags", "text": "text", "label": "label"}
    assert read_hf_disk(tmp_path / "ner", "train", fields, "ner") == [(["a", "b"], ["B-X", "I-X"])]
    cls = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    Dataset.from_dict({"text": ["t"], "label": [1]}, features=cls).save_to_disk(tmp_path / "cls")
    assert read_hf_disk(tmp_path / "cls", "test", fields, "classification") == [("t", ["pos"])]
    with pytest.raises(KeyError, match="no split 'dev'"):
        read_hf_disk(tmp_path / "ner", "dev", fields, "ner")


def test_read_table_json_array_and_drop_labels(tmp_path):
    path = tmp_path / "split.json"
    path.write_text('[{"clinical_case": "a", "icd-10": "C00-D49  Neoplasms"}, {"clinical_case": "b", "icd-10": NaN},\n'
                    ' {"clinical_case": "c", "icd-10": "Plusieurs cas cliniques"}, {"clinical_case": "d", "icd-10": "nan"}]',
                    encoding="utf-8")
    drop = ["nan", "Plusieurs cas cliniques", "Aucune annotation"]
    assert read_table(path, "clinical_case", "icd-10", None, drop_labels=drop) == [("a", ["C00-D49  Neoplasms"])]
    with pytest.raises(ValueError, match=r"split\.json: example 1: empty label"):
        read_table(path, "clinical_case", "icd-10", None)  # without the rule, a NaN label is an error
    tsv = tmp_path / "d.tsv"
    tsv.write_text("text\tlabel\nun\tA\ndeux\t\ntrois\tAucune annotation (x)\n", encoding="utf-8")
    assert read_table(tsv, "text", "label", None, drop_labels=drop) == [("un", ["A"])]
    path.write_text('[{"clinical_case": "a",\n "icd-10": }]', encoding="utf-8")
    with pytest.raises(ValueError, match=r"split\.json:2: invalid JSON"):
        read_table(path, "clinical_case", "icd-10", None)
