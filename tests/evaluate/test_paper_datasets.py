"""The paper's five non-QUAERO tasks read from fixtures in their published layouts (tests/fixtures).

The fixtures are invented text in the exact structure of each release: DrBenchmark's
DiaMED ``splits/*.json``, FrACCO's ``ann_txt_files/`` + ``DetectOnco_Final.csv``, FRASIMED's
flat BRAT folders with ICD-O-3.1 / SNOMED note lines, MedDialog-FR-women's two tab-separated
tables. Counts below are worked out by hand from the fixture files.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
from pathlib import Path

import pytest

from mcbio.evaluate import corpora
from mcbio.evaluate.run import read_split
from mcbio.evaluate.tasks import get_task

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def splits_of(task, root=FIXTURES) -> dict[str, list]:
    return {s: read_split(task, s, str(root)) for s in ("train", "dev", "test")}


def sizes(splits) -> dict[str, int]:
    return {s: len(rows) for s, rows in splits.items()}


def labels(splits) -> set[str]:
    return {label for rows in splits.values() for _, ls in rows for label in ls}


def copy_fixture(name: str, tmp_path: Path) -> Path:
    shutil.copytree(FIXTURES / name, tmp_path / name)
    return tmp_path


# --------------------------------------------------------------------------- the rules


def test_top_k_by_document_frequency_counts_documents_and_breaks_ties_by_code():
    docs = {"d1": ["b", "b", "a"], "d2": ["a", "c"], "d3": ["c", "d"], "d4": ["a"]}
    # document frequency: a 3, c 2, b 1 (twice in d1 but one document), d 1
    assert corpora.top_k_labels(docs, None) == ["a", "c", "b", "d"]
    assert corpora.top_k_labels(docs, 3) == ["a", "c", "b"]  # b beats d on the tie: code order
    assert corpora.keep_top_k(docs, 1) == {"d1": ["a"], "d2": ["a"], "d4": ["a"]}  # d3 left with none: dropped


def test_document_split_sorts_shuffles_with_seed_42_then_cuts_80_10_rest():
    names = [f"doc{i:02d}" for i in range(23)]
    random.Random(0).shuffle(names)  # input order must not matter
    parts = corpora.split_documents(names, seed=42)
    expected = sorted(names)
    random.Random(42).shuffle(expected)
    assert parts == {"train": expected[:18], "dev": expected[18:20], "test": expected[20:]}  # int(18.4), int(2.3)
    assert corpora.split_documents(names, seed=43) != parts


# --------------------------------------------------------------------------- DiaMED


def test_diamed_reads_drbenchmark_json_and_drops_unusable_cases():
    task = get_task("diamed")
    got = splits_of(task)
    # 8 / 4 / 3 cases in the files; dropped: icd-10 NaN and "Plusieurs cas cliniques" (train),
    # "Aucune annotation" (validation).
    assert sizes(got) == {"train": 6, "dev": 3, "test": 3}
    assert all(len(ls) == 1 for rows in got.values() for _, ls in rows)
    assert "C00-D49  Neoplasms" in labels(got) and len(labels(got)) == 6
    assert got["train"][0][0].startswith("Un homme de 64 ans")


def test_diamed_from_a_save_to_disk_folder_with_class_labels(tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    names = sorted({c["icd-10"] for s in ("train", "validation", "test")
                    for c in json.loads((FIXTURES / "diamed" / "splits" / f"{s}.json").read_text())
                    if isinstance(c["icd-10"], str) and "  " in c["icd-10"]})  # the chapter names, not the drop markers
    feats = Features({"clinical_case": Value("string"), "icd-10": ClassLabel(names=names)})
    dd = {}
    for split in ("train", "validation", "test"):
        rows = [c for c in json.loads((FIXTURES / "diamed" / "splits" / f"{split}.json").read_text())
                if isinstance(c["icd-10"], str) and c["icd-10"] in names]
        dd[split] = Dataset.from_dict({"clinical_case": [r["clinical_case"] for r in rows],
                                       "icd-10": [names.index(r["icd-10"]) for r in rows]}, features=feats)
    DatasetDict(dd).save_to_disk(tmp_path / "diamed_hf")
    task = dataclasses.replace(get_task("diamed"), format="hf_disk", root=str(tmp_path),
                               splits={s: "diamed_hf" for s in ("train", "dev", "test")})
    got = splits_of(task, tmp_path)
    assert sizes(got) == {"train": 6, "dev": 3, "test": 3}  # "dev" is the DatasetDict's "validation"
    assert got == splits_of(get_task("diamed"))


# --------------------------------------------------------------------------- FrACCO


def test_fracco_document_labels_top_k_and_split():
    got = splits_of(get_task("fracco_30"))
    # 12 documents; cc_onco12 has no expression_CIM row: 11 documents, 7 codes (< 30: all kept).
    assert sizes(got) == {"train": 8, "dev": 1, "test": 2}
    assert labels(got) == {"C50.9", "C34.1", "C18.7", "C61", "C73", "C67.9", "C20"}
    by_text = {t: ls for rows in got.values() for t, ls in rows}
    first = next(t for t in by_text if t.startswith("Patiente de 55 ans"))
    assert by_text[first] == ["C50.9"]  # two C50.9 rows: a set of codes
    # Top 3 by document frequency: C50.9 (5 documents), C34.1 (4), C18.7 (3); cc_onco11
    # (C61, C20) is left without a label and dropped: 10 documents, split 8 / 1 / 1.
    top3 = corpora.corpus_splits(dataclasses.replace(get_task("fracco_30"), top_k=3), FIXTURES / "FRACCO")
    assert sizes(top3) == {"train": 8, "dev": 1, "test": 1}
    assert labels(top3) == {"C50.9", "C34.1", "C18.7"}
    # Top 5: C61 (2 documents), then the first of the tied C20, C67.9, C73 (1 each) by code.
    top5 = corpora.corpus_splits(dataclasses.replace(get_task("fracco_30"), top_k=5), FIXTURES / "FRACCO")
    assert labels(top5) == {"C50.9", "C34.1", "C18.7", "C61", "C20"}


def test_fracco_split_does_not_depend_on_the_fine_tuning_seed_and_follows_the_rule():
    texts, codes = corpora.fracco_documents(FIXTURES / "FRACCO")
    kept = corpora.keep_top_k(codes, 30)
    order = sorted(kept)
    random.Random(42).shuffle(order)
    test_texts = [t for t, _ in splits_of(get_task("fracco_30"))["test"]]
    assert test_texts == [texts[name] for name in order[9:]]  # 11 documents: 8 train, 1 dev, 2 test


def test_fracco_errors_name_file_task_and_source(tmp_path):
    root = copy_fixture("FRACCO", tmp_path)
    (root / "FRACCO" / "DetectOnco_Final.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"task 'fracco_30': .*DetectOnco_Final\.csv.*Zenodo \(record 17284817"):
        read_split(get_task("fracco_30"), "train", str(root))
    csv_text = (FIXTURES / "FRACCO" / "DetectOnco_Final.csv").read_text(encoding="utf-8")
    (root / "FRACCO" / "DetectOnco_Final.csv").write_text(csv_text.replace(",code,", ",icd,", 1), encoding="utf-8")
    with pytest.raises(ValueError, match=r"DetectOnco_Final\.csv:1: no column 'code'"):
        read_split(get_task("fracco_100"), "train", str(root))
    (root / "FRACCO" / "DetectOnco_Final.csv").write_text(csv_text, encoding="utf-8")
    (root / "FRACCO" / "ann_txt_files" / "cc_onco3.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"cc_onco3\.txt \(document 'cc_onco3\.ann' of DetectOnco_Final\.csv:8\)"):
        read_split(get_task("fracco_100"), "test", str(root))
    with pytest.raises(FileNotFoundError, match=r"task 'fracco_30': data not found at .*nowhere/FRACCO.*Zenodo"):
        read_split(get_task("fracco_30"), "train", str(tmp_path / "nowhere"))


# --------------------------------------------------------------------------- FRASIMED


def test_cantemist_uses_icd_o_notes_top_k_and_drops_uncoded_documents():
    got = splits_of(get_task("cantemist"))
    # 12 documents; cc_onco1012 has only a SNOMED note: 11 documents with ICD-O-3.1 codes.
    assert sizes(got) == {"train": 8, "dev": 1, "test": 2}
    assert labels(got) == {"8500/3", "8140/3", "8000/6", "8070/3", "9680/3", "8850/0"}
    # Top 2: 8500/3 (6 documents), 8140/3 (4): 8 documents keep a label.
    top2 = corpora.corpus_splits(dataclasses.replace(get_task("cantemist"), top_k=2),
                                 FIXTURES / "FRASIMED" / "CANTEMIST-FRASIMED")
    assert sum(sizes(top2).values()) == 8 and labels(top2) == {"8500/3", "8140/3"}


def test_distemist_uses_snomed_notes_and_breaks_top_k_ties_by_code():
    got = splits_of(get_task("distemist"))
    assert sizes(got) == {"train": 9, "dev": 1, "test": 2} and len(labels(got)) == 9
    # Top 4: 38341003 (5), 44054006 (4), 195967001 (3), then the first of the three codes
    # with 2 documents by code order: 233604007.
    top4 = corpora.corpus_splits(dataclasses.replace(get_task("distemist"), top_k=4),
                                 FIXTURES / "FRASIMED" / "DISTEMIST-FRASIMED")
    assert labels(top4) == {"38341003", "44054006", "195967001", "233604007"}
    assert sum(sizes(top4).values()) == 8  # documents ...008, ...010, ...011, ...012 keep no label


def test_brat_note_without_a_code_is_an_error_naming_file_and_line(tmp_path):
    root = copy_fixture("FRASIMED", tmp_path)
    ann = root / "FRASIMED" / "CANTEMIST-FRASIMED" / "cc_onco1003.ann"
    ann.write_text(ann.read_text(encoding="utf-8").replace("\t8000/6", "\t"), encoding="utf-8")
    with pytest.raises(ValueError, match=r"cc_onco1003\.ann:4: BRAT note without a code"):
        read_split(get_task("cantemist"), "train", str(root))
    (root / "FRASIMED" / "DISTEMIST-FRASIMED" / "es-S0210-48062004000100004-1.ann").unlink()
    with pytest.raises(FileNotFoundError, match=r"task 'distemist': .*es-S0210-48062004000100004-1\.ann.*record 8355629"):
        read_split(get_task("distemist"), "train", str(root))


# --------------------------------------------------------------------------- MedDialog-FR


def test_meddialog_joins_question_and_answer_and_reads_the_split_column():
    got = splits_of(get_task("meddialog_fr"))
    # 13 annotated questions; one has an empty label list and is skipped.
    assert sizes(got) == {"train": 8, "dev": 2, "test": 2}
    assert labels(got) == {"C0032961", "C0025323", "C0019825", "C0014175", "C0011860", "C0030305", "C0021359"}
    text, ls = got["train"][0]
    assert text == ("Question: Je suis enceinte de 8 semaines, puis-je prendre du paracétamol ?\n\n"
                    "Réponse: Oui, le paracétamol est autorisé pendant la grossesse aux doses habituelles.")
    assert ls == ["C0032961"]
    assert got["train"][4][0] == "Question: Depuis l'arrêt de mes règles, je dors mal. Est-ce normal ?"  # no answer
    assert got["train"][2][0].startswith("Question: J'ai des règles très douloureuses")  # machine translation kept
    assert got["train"][1][1] == ["C0025323", "C0019825"]


def test_meddialog_from_one_table_csv_and_parquet(tmp_path):
    import pandas as pd

    reference = splits_of(get_task("meddialog_fr"))
    rows = []
    for split, examples in reference.items():
        for text, ls in examples:
            q, _, a = text.removeprefix("Question: ").partition("\n\nRéponse: ")
            rows.append({"question": q, "answer": a, "labels": repr(ls), "split": "validation" if split == "dev" else split})
    frame = pd.DataFrame(rows)
    frame.to_csv(tmp_path / "meddialog.csv", index=False)
    frame.assign(labels=[eval(x) for x in frame["labels"]]).to_parquet(tmp_path / "meddialog.parquet")
    for name in ("meddialog.csv", "meddialog.parquet"):
        task = dataclasses.replace(get_task("meddialog_fr"), root=str(tmp_path), splits={s: name for s in ("train", "dev", "test")})
        assert splits_of(task, tmp_path) == reference, name


def test_meddialog_errors_name_file_and_line(tmp_path):
    root = copy_fixture("MedDialog-FR-women", tmp_path)
    table = root / "MedDialog-FR-women" / "multilabel_annotation" / "dataset_multilabel_meddialog_22labels.csv"
    table.write_text(table.read_text(encoding="utf-8").replace("['C0014175']", "['C0014175'"), encoding="utf-8")
    with pytest.raises(ValueError, match=r"dataset_multilabel_meddialog_22labels\.csv:4: labels .* not a list literal"):
        read_split(get_task("meddialog_fr"), "train", str(root))
    table.write_text("id\tsplit\tcuis\nhm3_1_q\ttrain\t[]\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"meddialog_22labels\.csv:1: no column 'labels'"):
        read_split(get_task("meddialog_fr"), "train", str(root))
    (root / "MedDialog-FR-women" / "post-editing" / "meddialog-fr-women_post-editing.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"task 'meddialog_fr': .*meddialog-fr-women_post-editing\.csv"):
        read_split(get_task("meddialog_fr"), "train", str(root))


# --------------------------------------------------------------------------- end to end


def test_the_paper_tasks_fine_tune_from_the_fixtures(tiny_hf_dir):
    """Built-in declarations, fixtures as paths.shared_data: one epoch each, records the length and top-1 variant."""
    from mcbio.config.schema import FinetuneConfig
    from mcbio.evaluate.run import evaluate_task

    cfg = FinetuneConfig(epochs=1, lr=1e-3, batch_size=4)
    multi = evaluate_task(str(tiny_hf_dir), "cantemist", 42, cfg, str(FIXTURES))
    assert set(multi["metrics"]) == {"micro_f1", "macro_f1", "micro_f1_top1", "macro_f1_top1"}
    assert multi["primary_metric"] == "micro_f1" and multi["max_length"] == 256  # the tiny model's own context
    single = evaluate_task(str(tiny_hf_dir), "diamed", 42, cfg, str(FIXTURES))
    assert single["primary_metric"] == "macro_f1" and single["sizes"] == {"train": 6, "dev": 3, "test": 3}
