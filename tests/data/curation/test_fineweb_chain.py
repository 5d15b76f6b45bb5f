"""The FineWeb-2 chain with its shared work (mcbio.data.curation.fineweb2) decides as datatrove's
own filters do: the same documents kept, the same filter and reason for every dropped one, on real
E3C passages and on crafted edge cases; and it tokenises each document once."""

from __future__ import annotations

import importlib.util
import pickle
import sys
from dataclasses import replace

import pytest
from datatrove.pipeline.filters import gopher_repetition_filter as datatrove_repetition
from datatrove.utils.word_tokenizers import load_word_tokenizer

from mcbio.config.curation import ExtractionConfig, FineWeb2Config, GopherRepetitionConfig, SegmentConfig, SourceConfig
from mcbio.data.curation import fineweb2
from mcbio.data.curation.chain import fineweb2_steps
from mcbio.data.curation.fineweb2 import SpacyWordTokenizer, WordWindows, chain_word_tokenizer
from mcbio.data.curation.llm_tasks import extraction_prompt, parse_extraction, rules_extract
from mcbio.data.curation.readers import build_reader
from mcbio.data.curation.segment import segment_text
from mcbio.data.curation.text import TokenCounter
from tests.conftest import REPO


def _benchmark():
    """benchmarks/curation_throughput.py, whose side-by-side run these tests share."""
    spec = importlib.util.spec_from_file_location("curation_throughput", REPO / "benchmarks" / "curation_throughput.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fineweb2_outcomes = _benchmark().fineweb2_outcomes


@pytest.fixture(scope="module")
def e3c_passages(shared_data):
    """Passages of 300 E3C journal articles, cut and extracted by the pipeline's rules (366 passages)."""
    folder = shared_data / "e3c_fr_unlabeled" / "layer3_journal"
    reader = build_reader("e3c", SourceConfig(path=str(folder), format="e3c_json", limit=300))
    counter = TokenCounter()
    chunks = [c for d in reader.run(None, 0, 1) for c in segment_text(d.text, SegmentConfig().target_tokens, counter)]
    max_words = ExtractionConfig().max_passage_words
    return [p for c in chunks for p in parse_extraction(rules_extract(extraction_prompt(c, max_words)))]


def side_by_side(cfg: FineWeb2Config, texts, tmp_path):
    """Each text's outcome from datatrove's chain and from the pipeline's, with their statistics."""
    runs = {}
    for reference in (True, False):
        folder = tmp_path / ("datatrove" if reference else "shared")
        steps = fineweb2_steps(cfg, None, str(folder), reference=reference)
        outcomes, _ = fineweb2_outcomes(steps, texts, str(folder))
        stats = {(s.name, k): v.total for s in steps for k, v in s.stats.stats.items() if k != "total_time"}
        runs[reference] = (outcomes, stats)
    return runs[True], runs[False]


# --------------------------------------------------------------------------- real passages


@pytest.mark.shared_data
def test_chain_decides_as_datatrove_on_e3c_passages(e3c_passages, tmp_path):
    assert len(e3c_passages) >= 300
    (expected, expected_stats), (got, got_stats) = side_by_side(FineWeb2Config(), e3c_passages, tmp_path)
    assert got == expected
    assert got_stats == expected_stats  # in, kept, dropped/<reason>, tokens... per step
    reasons = {o for o in expected.values() if o != "kept"}
    # The sample exercises all three filters, and keeps most passages.
    assert {r.split(":")[0] for r in reasons} == {"GopherRepetitionFilter", "FineWebQualityFilter",
                                                  "GopherQualityFilter"}
    assert sum(o == "kept" for o in expected.values()) > 0.8 * len(e3c_passages)


@pytest.mark.shared_data
def test_shared_tokenizer_gives_datatrove_words_on_e3c_passages(e3c_passages):
    datatrove_words = load_word_tokenizer("fra")
    ours = SpacyWordTokenizer("fr")
    assert [ours.word_tokenize(p) for p in e3c_passages] == [datatrove_words.word_tokenize(p) for p in e3c_passages]


@pytest.mark.shared_data
def test_word_windows_count_as_datatrove_helpers_on_e3c_passages(e3c_passages):
    tokenizer = chain_word_tokenizer("fra")
    repeats = 0
    for passage in e3c_passages[:150]:
        words = tokenizer.word_tokenize(passage)
        windows = WordWindows(words)
        for n in range(1, 11):
            grams = datatrove_repetition.get_n_grams(words, n)
            assert windows.top_chars(n) == (datatrove_repetition.find_top_duplicate(grams) if grams else None)
            expected = datatrove_repetition.find_all_duplicate(words, n)
            assert windows.repeated_chars(n) == expected
            repeats += expected > 0
    assert repeats > 50  # real repeats went through the scan, not only the no-repeat shortcut


# --------------------------------------------------------------------------- crafted cases

CASE = (
    "Un homme de 64 ans, diabétique et hypertendu, a consulté aux urgences pour une douleur thoracique "
    "apparue au repos depuis deux heures. L'électrocardiogramme montrait un sus-décalage du segment ST dans "
    "le territoire inférieur, et le dosage de la troponine était très élevé. Une coronarographie réalisée en "
    "urgence a mis en évidence une occlusion de l'artère coronaire droite, traitée par angioplastie avec pose "
    "d'un stent. Les suites ont été simples et le patient est sorti au cinquième jour sous double antiagrégation."
)
LINES = [
    "Le patient a reçu une dose initiale de 500 mg par voie orale",
    "La fonction rénale était surveillée chaque semaine pendant le traitement",
    "Une échographie abdominale a été réalisée à la recherche d'une complication",
    "Les effets indésirables les plus fréquents étaient des nausées et des céphalées",
    "Le suivi à six mois ne montrait aucune récidive de la maladie",
    "Une consultation de contrôle a été programmée dans le service de médecine interne",
    "Les résultats biologiques se sont normalisés après l'arrêt du médicament",
    "La patiente a été informée des risques liés à l'interruption du traitement",
]


def opening(n_words: int) -> str:
    return " ".join(CASE.split()[:n_words]).rstrip(".,") + "."


DUP = "Le traitement a été arrêté après la survenue d'une hépatite médicamenteuse sévère."
PHRASE = "la prise en charge thérapeutique de la maladie de Crohn chez l'enfant"
SYMPTOMS = ("Fièvre Toux Nausées Céphalées Asthénie Vertiges Dyspnée Douleurs Prurit Oedèmes Frissons Sueurs "
            "Diarrhée Constipation Insomnie Anorexie").split()

# Text -> outcome with FineWeb-2's French values (datatrove's, checked below for both chains).
EDGE_CASES = {
    "good": (CASE, "kept"),
    "mojibake": (CASE.replace("é", "Ã©"), "kept"),  # ftfy repairs it first
    "repeated_lines": ("\n".join(["Prendre un comprimé le matin."] * 12), "GopherRepetitionFilter:dup_line_frac"),
    "repeated_paragraphs": ("\n\n".join([CASE, LINES[0] + ".", CASE, LINES[1] + ".", CASE]),
                            "GopherRepetitionFilter:dup_line_frac"),
    "duplicated_5_grams": (CASE + " " + " ".join(f"{line}, {PHRASE}." for line in LINES[:4]),
                           "GopherRepetitionFilter:duplicated_5_n_grams"),
    # The case's opening repeated: how many words decides which window size trips first.
    "duplicated_9_grams": (f"{opening(16)}\n{CASE}", "GopherRepetitionFilter:duplicated_9_n_grams"),
    "duplicated_6_grams": (f"{LINES[0]}.\n{opening(21)}\n{CASE}", "GopherRepetitionFilter:duplicated_6_n_grams"),
    "top_3_gram": (CASE + " " + " ".join(f"Le patient {w}." for w in "mange dort marche parle lit écrit chante rit "
                                                                      "pleure tousse".split()),
                   "GopherRepetitionFilter:top_3_gram"),
    "duplicated_long_line": ("\n".join(LINES[:3] + [CASE] + LINES[3:6] + [CASE] + LINES[6:]),
                             "GopherRepetitionFilter:duplicated_5_n_grams"),
    "duplicated_long_paragraph": ("\n\n".join([LINES[0] + ".", CASE, LINES[1] + ".", LINES[2] + ".", CASE,
                                               LINES[3] + "."]), "GopherRepetitionFilter:duplicated_5_n_grams"),
    "no_final_punctuation": ("\n".join(LINES), "FineWebQualityFilter:line_punct_ratio"),
    "short_lines": ("\n".join(f"{w}." for w in SYMPTOMS), "FineWebQualityFilter:list_ratio"),
    "duplicated_line_chars": ("\n".join([l + "." for l in LINES[:2]] + [DUP] + [l + "." for l in LINES[2:]] + [DUP]),
                              "FineWebQualityFilter:char_dup_ratio"),
    "whitespace": ("  \n\n \t ", "FineWebQualityFilter:empty"),
    "bullets": ("\n".join(f"- {line}." for line in LINES), "GopherQualityFilter:gopher_too_many_bullets"),
    "ellipsis_lines": ("\n".join(f"{line}…" for line in LINES) + "\n" + CASE,
                       "GopherQualityFilter:gopher_too_many_end_ellipsis"),
    "many_ellipses": (CASE + " " + " ".join(f"{w.lower()}..." for w in SYMPTOMS[:12]) + " fin.",
                      "GopherQualityFilter:gopher_too_many_ellipsis"),
    "hashes": (CASE + " " + " ".join(f"#{w.lower()}" for w in SYMPTOMS + LINES[0].split()[:4]) + ".",
               "GopherQualityFilter:gopher_too_many_hashes"),
    # Words with a letter and a digit or a hyphen count as words with letters: kept.
    "lab_codes": (CASE + " Le bilan retrouvait une HbA1c à 9 %, des CD4 normaux, une vitamine B12 basse et une TSH "
                  "normale avec T4 et T3 libres dans les normes ; la sérologie SARS-CoV-2 était négative, l'IL-6 et la "
                  "CRP-us élevées, le NT-proBNP normal, la 25-OH-D3 basse et l'ECBU stérile.", "kept"),
    "numbers": ("Résultats : " + " ".join(f"{i},{i * 7 % 10} ; {i * 3}/{i + 1} ;" for i in range(40)) + " fin.",
                "GopherQualityFilter:gopher_below_alpha_threshold"),
    "long_words": (" ".join(p + s for p in ("cardio", "hépato", "néphro", "neuro", "gastro", "pneumo", "dermato",
                                            "ophtalmo")
                            for s in ("pathologique", "myopathique", "toxicité", "chirurgical", "physiologie",
                                      "logiquement", "graphique")) + ".",
                   "GopherQualityFilter:gopher_above_avg_threshold"),
    "single_letters": (" ".join("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") + ".",
                       "GopherQualityFilter:gopher_below_avg_threshold"),
    "short_doc": ("Le patient, admis pour une fièvre isolée sans point d'appel clinique, est sorti après trois jours "
                  "sous antibiotiques par voie orale. Il reviendra en consultation dans un mois avec un bilan sanguin "
                  "complet.", "GopherQualityFilter:gopher_short_doc"),
    "symbols_not_words": ("Le patient, admis pour une fièvre isolée sans point d'appel clinique, est sorti après trois "
                          "jours sous antibiotiques par voie orale. Il reviendra en consultation dans un mois avec un "
                          "bilan sanguin complet : ( ) [ ] « » – — / * + = % ; ! ? § fin.",
                          "GopherQualityFilter:gopher_short_doc"),
    "english": ("The patient was admitted to the hospital with a severe headache and a fever. Blood tests showed an "
                "infection that was treated with antibiotics for ten days, and the symptoms resolved quickly. The "
                "follow-up visit after one month was normal and no further treatment was needed for this patient.",
                "GopherQualityFilter:gopher_enough_stop_words"),
    "greek": ("Ο ασθενής εισήχθη στο νοσοκομείο με σοβαρό πονοκέφαλο και πυρετό. Οι εξετάσεις αίματος έδειξαν "
              "λοίμωξη που αντιμετωπίστηκε με αντιβιοτικά για δέκα ημέρες, και τα συμπτώματα υποχώρησαν γρήγορα. "
              "Η επανεξέταση μετά από έναν μήνα ήταν φυσιολογική.", "GopherQualityFilter:gopher_short_doc"),
    "chinese": ("患者因严重头痛和发烧入院。血液检查显示感染，使用抗生素治疗十天后症状迅速缓解。一个月后的复诊结果正常。",
                "GopherRepetitionFilter:top_2_gram"),
}
# With the paragraph and line-character checks on (datatrove's defaults; FineWeb-2 French has them off).
ALL_REPETITION_CHECKS = {
    "repeated_paragraphs": "GopherRepetitionFilter:dup_para_frac",
    "duplicated_long_line": "GopherRepetitionFilter:dup_line_char_frac",
    "duplicated_long_paragraph": "GopherRepetitionFilter:dup_para_char_frac",
}


def _all_repetition_checks() -> FineWeb2Config:
    return replace(FineWeb2Config(), repetition=GopherRepetitionConfig(dup_para_frac=0.3, dup_para_char_frac=0.2,
                                                                       dup_line_char_frac=0.2))


@pytest.mark.parametrize("cfg, changed", [(FineWeb2Config(), {}), (_all_repetition_checks(), ALL_REPETITION_CHECKS)],
                         ids=["fra_Latn", "all_repetition_checks"])
def test_chain_decides_as_datatrove_on_edge_cases(cfg, changed, tmp_path):
    names = list(EDGE_CASES)
    expected = {name: changed.get(name, outcome) for name, (_, outcome) in EDGE_CASES.items()}
    (datatrove, datatrove_stats), (shared, shared_stats) = side_by_side(
        cfg, [EDGE_CASES[name][0] for name in names], tmp_path)
    assert {name: datatrove[str(i)] for i, name in enumerate(names)} == expected
    assert {name: shared[str(i)] for i, name in enumerate(names)} == expected
    assert shared_stats == datatrove_stats


def test_empty_text_fails_both_chains_alike(tmp_path):
    """datatrove's repetition filter divides by the text's length: an empty text is an error in both."""
    for reference in (True, False):
        with pytest.raises(ZeroDivisionError):
            fineweb2_outcomes(fineweb2_steps(FineWeb2Config(), None, str(tmp_path), reference=reference), [""],
                              str(tmp_path))


def test_shared_tokenizer_gives_datatrove_words_on_crafted_text():
    texts = [case for case, _ in EDGE_CASES.values()] + [
        "", " ", "l'hôpital aujourd'hui, c'est-à-dire jusqu'à 10\u202fmg/kg (soit 0,5 %).",
        "Voir https://www.has-sante.fr/jcms/c_1 et contact@chu.fr\tou le 01 23 45 67 89.\r\nFin\u00a0!",
        "«Guillemets» — tirets – et … points ; 😀 émoji ; SARS-CoV-2 ; IL-6 ; p < 0,05 ; T°=38,5°C.",
    ]
    datatrove_words = load_word_tokenizer("fra")
    ours = SpacyWordTokenizer("fr")
    assert [ours.word_tokenize(t) for t in texts] == [datatrove_words.word_tokenize(t) for t in texts]


def test_is_alpha_token_dropped_as_datatrove_drops_it():
    """spaCy's bug: datatrove keeps the token "IS_ALPHA" in the first text of a process that holds
    it and drops it from every later one; the shared tokenizer always drops it."""
    datatrove_words = load_word_tokenizer("fra")
    datatrove_words.word_tokenize("IS_ALPHA")  # the first one, whenever this test runs
    ours = SpacyWordTokenizer("fr")
    for text in ["Le gène IS_ALPHA est muté.", "(IS_ALPHA) et IS_ALPHAB", "IS_IS_ALPHAALPHA"]:
        assert ours.word_tokenize(text) == datatrove_words.word_tokenize(text)
    assert ours.word_tokenize("(IS_ALPHA) et IS_ALPHAB") == ["(", ")", "et", "B"]
    assert ours.word_tokenize("IS_IS_ALPHAALPHA") == ["IS_IS_ALPHAALPHA"]  # not the token: kept


def test_word_windows_count_as_datatrove_helpers_on_crafted_words():
    cases = [
        [],
        ["seul"],
        ["ab", "c", "d", "e", "f", "a", "bc", "d", "e", "f"],  # glued, "abcdef" twice: datatrove counts a repeat
        ["a", "bb", "a", "bb", "c", "a", "bb"],  # windows tied at the top count, lengths differ: the first seen wins
        ["a b", "c", "a", "b c", "a b", "c"],  # words holding a space: space-joined windows collide
        ["la", "la", "la", "la", "la", "la", "la", "la", "la", "la", "la", "la"],
        ["a\ud800", "b", "a\ud800", "b", "c"],  # a lone surrogate (not valid UTF-8) is still hashed
        "le patient le patient le patient a vu le patient le patient le patient".split(),
    ]
    for words in cases:
        windows = WordWindows(words)
        for n in range(1, 11):
            grams = datatrove_repetition.get_n_grams(words, n)
            assert windows.top_chars(n) == (datatrove_repetition.find_top_duplicate(grams) if grams else None), (words, n)
            assert windows.repeated_chars(n) == datatrove_repetition.find_all_duplicate(words, n), (words, n)


def test_hash_collisions_are_compared_as_strings():
    """Thue-Morse strings of 2**11 characters hash alike modulo 2**64 whatever the base: two windows
    with one hash and different text must not count as a repeat."""
    thue_morse = "a"
    for _ in range(11):
        thue_morse += thue_morse.translate(str.maketrans("ab", "ba"))
    complement = thue_morse.translate(str.maketrans("ab", "ba"))
    words = [thue_morse, "x", complement, "x"]
    windows = WordWindows(words)
    hashes = windows.hashes(2).tolist()
    assert hashes[0] == hashes[2] and thue_morse + "x" != complement + "x"
    assert windows.repeated_chars(2) == datatrove_repetition.find_all_duplicate(words, 2) == 0
    assert WordWindows(words + [thue_morse, "x"]).repeated_chars(2) == len(thue_morse + "x")


# --------------------------------------------------------------------------- shared work


def test_chain_tokenises_each_document_once(monkeypatch):
    calls = []
    tokenize = SpacyWordTokenizer.word_tokenize
    monkeypatch.setattr(SpacyWordTokenizer, "word_tokenize", lambda self, text: calls.append(text) or tokenize(self, text))
    texts = [f"{CASE} Observation numéro {i}." for i in range(7)]
    steps = fineweb2_steps(FineWeb2Config())
    assert [type(s.inner).__name__ for s in steps[1:]] == ["GopherRepetitionFilter", "FineWebQualityFilter",
                                                           "GopherQualityFilter"]
    outcomes, _ = fineweb2_outcomes(steps, texts, "/nonexistent")
    assert set(outcomes.values()) == {"kept"}  # all three filters read the words of every text
    assert calls == texts


def test_tokenizer_restarts_its_pipeline_and_pickles_without_it(monkeypatch):
    monkeypatch.setattr(fineweb2, "TEXTS_PER_PIPELINE", 2)
    tokenizer = SpacyWordTokenizer("fr")
    expected = load_word_tokenizer("fra").word_tokenize(CASE)
    pipelines = []
    for _ in range(5):
        assert tokenizer.word_tokenize(CASE) == expected
        pipelines.append(id(tokenizer.tokenizer))
    assert len(set(pipelines)) == 3  # a fresh spaCy pipeline every 2 texts
    copy = pickle.loads(pickle.dumps(tokenizer))
    assert copy._tokenizer is None and len(pickle.dumps(tokenizer)) < 1000
    assert copy.word_tokenize(CASE) == expected
