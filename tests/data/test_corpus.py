"""Corpus readers: JSONL, text and E3C JSON documents; bad input names the file and line."""

from __future__ import annotations

import json

import pytest

from mcbio.data.corpus import CorpusError, iter_documents


def test_sample_corpus_ships_with_the_package():
    docs = list(iter_documents())
    assert len(docs) > 100
    assert {d.source for d in docs} == {"articles", "ontobook", "emea", "e3c"}
    assert all(d.text.strip() for d in docs)


def test_reads_jsonl_text_and_json_documents_in_path_order(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"id": "x", "text": "Premier."}) + "\n\n" + json.dumps({"content": "Deuxième."}) + "\n")
    (tmp_path / "b.txt").write_text("Un fichier texte.")
    (tmp_path / "c.json").write_text(json.dumps({"text": "Un cas clinique.", "lang": "fr"}))
    (tmp_path / "ignored.csv").write_text("x,y\n")
    docs = list(iter_documents(tmp_path))
    assert [d.text for d in docs] == ["Premier.", "Deuxième.", "Un fichier texte.", "Un cas clinique."]
    assert docs[0].id == "x" and docs[1].id == "a:3"
    assert docs[3].metadata == {"lang": "fr"}
    assert len(list(iter_documents(tmp_path, max_documents=2))) == 2


def test_bad_lines_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "ok"}) + "\n{not json\n")
    with pytest.raises(CorpusError, match=r"bad\.jsonl:2: invalid JSON"):
        list(iter_documents(bad))
    bad.write_text(json.dumps({"title": "no text"}) + "\n")
    with pytest.raises(CorpusError, match=r"bad\.jsonl:1: no text field"):
        list(iter_documents(bad))
    with pytest.raises(CorpusError, match="corpus not found"):
        list(iter_documents(tmp_path / "missing"))
