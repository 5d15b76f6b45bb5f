"""Curation steps on crafted inputs: filters, dedup, FineWeb-2 French chain, labels, upsampling,
mix, fidelity, segmentation."""

from __future__ import annotations

import json

import pytest
from datatrove.data import Document

from mcbio.config.curation import FineWeb2Config, UpsamplingConfig
from mcbio.data.curation.chain import fineweb2_steps
from mcbio.data.curation.dedup import WindowDeduplicator
from mcbio.data.curation.fidelity import character_overlap, fidelity_distribution
from mcbio.data.curation.llm_tasks import parse_annotation, parse_extraction, rules_annotate, rules_extract, annotation_prompt, extraction_prompt
from mcbio.data.curation.mix import PoolDoc, plan_mix
from mcbio.data.curation.segment import segment_text
from mcbio.data.curation.steps import JaccardDedup, PassageFilter, QualityUpsampler, TypeAndLengthFilter
from mcbio.data.curation.text import TokenCounter, normalise_for_fidelity
from mcbio.data.curation.upsample import copies, upsampling_factor

CASE = (
    "Une femme de 57 ans, sans antécédents pathologiques notables, était hospitalisée pour l'exploration "
    "d'un syndrome rectal avec des rectorragies évoluant depuis vingt jours. L'examen de la cavité buccale "
    "montrait des ulcérations de la lèvre inférieure et une lésion ulcéro-bourgeonnante du bord latéral de la "
    "langue. Le bilan biologique retrouvait une anémie et un syndrome inflammatoire, et la biopsie confirmait "
    "le diagnostic. Le traitement par corticoïdes a permis une amélioration rapide des symptômes du patient."
)


def run_step(step, docs):
    return list(step.run(iter(docs), 0, 1))


def doc(text, id_="d", **meta):
    return Document(text=text, id=id_, metadata={"curate": True, **meta})


# --------------------------------------------------------------------------- passage filter

def test_passage_filter_words_and_alpha_ratio():
    step = PassageFilter(min_words=30, max_words=600, min_alpha_ratio=0.6)
    short = doc("Le patient va bien.", "short")
    long_ = doc(" ".join(["mot"] * 601), "long")
    numeric = doc(" ".join(["12,5 mg/kg 3 x 4 ; 7.2 ± 0,3 %"] * 10), "numeric")
    good = doc(CASE, "good")
    kept = run_step(step, [short, long_, numeric, good])
    assert [d.id for d in kept] == ["good"]
    assert step.reason(" ".join(["mot"] * 30)) is None and step.reason(" ".join(["mot"] * 600)) is None
    assert step.reason(" ".join(["mot"] * 29)) == "too_few_words"
    assert step.stats["dropped/low_alpha_ratio"].total == 1


def test_uncurated_documents_pass_through_untouched():
    step = PassageFilter(30, 600, 0.6)
    raw = Document(text="court", id="x", metadata={"curate": False})
    assert run_step(step, [raw]) == [raw]


# --------------------------------------------------------------------------- dedup

def test_jaccard_dedup_threshold_and_window():
    base = CASE
    near = CASE.replace("vingt jours", "trois semaines")  # Jaccard well above 0.8
    other = "La vaccination antigrippale est recommandée chez les personnes âgées de plus de 65 ans chaque automne."
    step = JaccardDedup(threshold=0.8, window=5)
    kept = run_step(step, [doc(base, "a"), doc(near, "b"), doc(other, "c")])
    assert [d.id for d in kept] == ["a", "c"]
    # Outside the window of 5 kept passages, a repeat is no longer seen.
    fillers = [f"Passage numéro {i} sur un sujet {'xyz' * (i + 1)} entièrement différent {i * 7}." for i in range(5)]
    dedup = WindowDeduplicator(0.8, window=5)
    assert dedup.is_duplicate(base) == (False, 0.0)
    for f in fillers:
        assert not dedup.is_duplicate(f)[0]
    assert not dedup.is_duplicate(base)[0]


def test_jaccard_dedup_just_below_threshold_is_kept():
    a = " ".join(f"w{i}" for i in range(10))
    b = " ".join(f"w{i}" for i in range(8)) + " z1 z2"  # 8 shared / 12 union = 0.667
    dedup = WindowDeduplicator(0.8, 5)
    assert not dedup.is_duplicate(a)[0]
    dup, score = dedup.is_duplicate(b)
    assert not dup and score == pytest.approx(8 / 12)


# --------------------------------------------------------------------------- FineWeb-2 French chain

def test_fineweb2_chain_keeps_good_french_and_needs_french_stop_words():
    """spaCy's blank 'fr' tokenizer runs offline; English stop words would reject French."""
    steps = fineweb2_steps(FineWeb2Config())
    docs = [doc(CASE, "fr")]
    for step in steps:
        docs = run_step(step, docs)
    assert [d.id for d in docs] == ["fr"]

    english = FineWeb2Config()
    english.gopher_quality.stop_words = ["the", "be", "to", "of", "and", "that", "have", "with"]
    gopher_quality = fineweb2_steps(english)[-1]
    assert run_step(gopher_quality, [doc(CASE, "fr")]) == []
    assert gopher_quality.stats["dropped/GopherQualityFilter:gopher_enough_stop_words"].total == 1


def test_fineweb2_chain_drops_repetitive_and_broken_text():
    steps = fineweb2_steps(FineWeb2Config())
    repeated = doc("\n".join(["Prendre un comprimé le matin."] * 12), "rep")
    no_punct = doc("\n".join(["ligne sans ponctuation finale numéro %d avec quelques mots de plus ici" % i
                              for i in range(12)]), "nopunct")
    mojibake = doc(CASE.replace("é", "Ã©"), "mojibake")
    out = [repeated, no_punct, mojibake]
    for step in steps:
        out = run_step(step, out)
    assert [d.id for d in out] == ["mojibake"]
    assert "é" in out[0].text and "Ã©" not in out[0].text  # ftfy repaired the encoding


# --------------------------------------------------------------------------- LLM answers

GOOD = '{"edu": 8, "cont": 7, "writ": 9, "term": 6, "type": "patient_case"}'


@pytest.mark.parametrize(
    "answer, message",
    [
        ('{"edu": 8, "cont": 7, "writ": 9, "term": 6, "type": "patient_ca', "truncated JSON"),
        ('{"edu": 8, "cont": 7, "writ": 9, "type": "patient_case"}', "missing key 'term'"),
        ('{"edu": 8, "cont": 7, "writ": 9, "term": 6}', "missing key 'type'"),
        ('{"edu": 12, "cont": 7, "writ": 9, "term": 6, "type": "patient_case"}', "out of range 1-10"),
        ('{"edu": 0, "cont": 7, "writ": 9, "term": 6, "type": "patient_case"}', "out of range 1-10"),
        ('{"edu": "huit", "cont": 7, "writ": 9, "term": 6, "type": "patient_case"}', "must be an integer"),
        ('{"edu": 7.5, "cont": 7, "writ": 9, "term": 6, "type": "patient_case"}', "must be an integer"),
        ('{"edu": 8, "cont": 7, "writ": 9, "term": 6, "type": "clinical_case"}', "is not one of"),
        ("Je pense que ce passage est de bonne qualité.", "no JSON object"),
    ],
)
def test_annotation_schema_rejects_malformed_answers(answer, message):
    with pytest.raises(ValueError, match=message):
        parse_annotation(answer)


def test_annotation_accepts_prose_around_the_json():
    labels = parse_annotation(f"Voici mon évaluation :\n```json\n{GOOD}\n```\nJ'espère que cela aide.")
    assert labels == {"edu": 8, "cont": 7, "writ": 9, "term": 6, "type": "patient_case"}


def test_extraction_schema():
    assert parse_extraction('{"passages": ["Un.", " ", "Deux."]}') == ["Un.", "Deux."]
    with pytest.raises(ValueError, match="missing key 'passages'"):
        parse_extraction('{"passage": ["Un."]}')
    with pytest.raises(ValueError, match="must be a list"):
        parse_extraction('{"passages": "Un."}')
    with pytest.raises(ValueError, match=r"passages\[1\]' must be a string"):
        parse_extraction('{"passages": ["Un.", 2]}')


def test_rule_responders_answer_valid_json():
    pdf_like = (f"Revue Médicale 2021 ; 12 : 4\n\n{CASE}\n\nFigure 1 : scanner thoracique\n\n"
                f"{CASE.replace('57', '63')}\n\nRéférences\n\n1. Dupont J et al. Rev Med 2019;3:1-5.")
    passages = parse_extraction(rules_extract(extraction_prompt(pdf_like, 600)))
    joined = " ".join(passages)
    assert "Figure 1" not in joined and "Dupont" not in joined and "Revue Médicale" not in joined
    assert "57 ans" in joined and "63 ans" in joined
    labels = parse_annotation(rules_annotate(annotation_prompt(CASE)))
    assert labels["type"] == "patient_case"
    leaflet = ("Prenez un comprimé matin et soir. Posologie : ne pas dépasser la dose prescrite. En cas de surdosage, "
               "consultez votre pharmacien. Les effets indésirables possibles sont décrits dans cette notice.")
    assert parse_annotation(rules_annotate(annotation_prompt(leaflet)))["type"] == "drug_information"


# --------------------------------------------------------------------------- selection and upsampling

def test_type_and_length_filter():
    step = TypeAndLengthFilter(["drug_information", "other"], min_tokens=50, counter=TokenCounter())
    lab = {"edu": 8, "cont": 8, "writ": 8, "term": 8}
    docs = [doc(CASE, "case", labels={**lab, "type": "patient_case"}),
            doc(CASE, "drug", labels={**lab, "type": "drug_information"}),
            doc(CASE, "other", labels={**lab, "type": "other"}),
            doc("Texte court de dix mots seulement pour le test ici.", "short", labels={**lab, "type": "patient_case"})]
    assert [d.id for d in run_step(step, docs)] == ["case"]
    assert step.stats["dropped/too_few_tokens"].total == 1


@pytest.mark.parametrize(
    "ratio, factor",
    [(0.0, 0.0), (0.01, 4.3), (0.25, 4.3), (0.26, 8.5), (0.50, 8.5), (0.51, 12.8), (0.75, 12.8),
     (0.76, 21.3), (0.99, 21.3), (0.996, 21.3), (1.0, 34.1), (0.004, 4.3)],
)
def test_upsampling_factor_at_bucket_edges(ratio, factor):
    assert upsampling_factor(ratio, UpsamplingConfig()) == factor


def test_upsampler_groups_passages_by_article():
    cfg = UpsamplingConfig()
    good = {"edu": 8, "cont": 7, "writ": 5, "term": 5, "type": "patient_case"}
    weak = {**good, "cont": 6}
    docs = [doc(CASE, "a1", article_id="A", labels=good), doc(CASE, "a2", article_id="A", labels=weak),
            doc(CASE, "a3", article_id="A", labels=weak), doc(CASE, "a4", article_id="A", labels=weak),
            doc(CASE, "b1", article_id="B", labels=weak),
            doc(CASE, "c1", article_id="C", labels=good)]
    out = run_step(QualityUpsampler(cfg), docs)
    assert {d.id: d.metadata["upsample_factor"] for d in out} == {"a1": 4.3, "a2": 4.3, "a3": 4.3, "a4": 4.3, "c1": 34.1}
    # Fractional factors are realised as integer copies with the right mean, reproducibly.
    n = [copies(4.3, f"doc{i}", seed=0) for i in range(4000)]
    assert set(n) == {4, 5} and abs(sum(n) / len(n) - 4.3) < 0.03
    assert n == [copies(4.3, f"doc{i}", seed=0) for i in range(4000)]


# --------------------------------------------------------------------------- mix

def test_mix_reaches_token_shares_deterministically():
    pools = {"articles": [PoolDoc(100 + i % 50, factor=4.3) for i in range(300)],
             "ontobook": [PoolDoc(200) for _ in range(100)],
             "emea": [PoolDoc(80) for _ in range(50)],
             "e3c": [PoolDoc(120) for _ in range(40)]}
    shares = {"articles": 0.70, "ontobook": 0.20, "emea": 0.06, "e3c": 0.04}
    plan, report = plan_mix(pools, shares, total_tokens=200_000, seed=42)
    for group, share in shares.items():
        assert report["groups"][group]["share_mixed"] == pytest.approx(share, abs=0.01)
    assert report["tokens_mixed"] == pytest.approx(200_000, rel=0.02)
    plan2, _ = plan_mix(pools, shares, total_tokens=200_000, seed=42)
    plan3, _ = plan_mix(pools, shares, total_tokens=200_000, seed=7)
    assert plan == plan2 and plan != plan3
    # Without a budget, the scarcest group is used exactly once.
    _, auto = plan_mix(pools, shares, total_tokens=None, seed=42)
    assert auto["groups"]["emea"]["copies"] == 50  # emea: 4,000 tokens for a 6 % share


def test_mix_missing_group():
    pools = {"articles": [PoolDoc(100)] * 10}
    with pytest.raises(ValueError, match="no documents for group"):
        plan_mix(pools, {"articles": 0.7, "emea": 0.3}, None, 0, renormalize_missing=False)
    _, report = plan_mix(pools, {"articles": 0.7, "emea": 0.3}, None, 0)
    assert report["groups"]["articles"]["share_mixed"] == 1.0


# --------------------------------------------------------------------------- fidelity

# The paper's two appendix examples were not available; these two are written in their
# spirit: an OCR-damaged PDF excerpt and its LLM-cleaned passage, and a rewritten one.
SOURCE_1 = ("Revue de Médecine Interne 2019\n\nLa maladie de Behçet est une vascularite systé-\nmique "
            "d'étiologie inconnue. Elle touche les vaisseaux de tout calibre [12]. Figure 2 : aphtose buccale.\n"
            "Le diagnostic repose sur des critères cliniques internationaux.")
PASSAGE_1 = ("La maladie de Behçet est une vascularite systémique d'étiologie inconnue. Elle touche les "
             "vaisseaux de tout calibre. Le diagnostic repose sur des critères cliniques internationaux.")
SOURCE_2 = ("L'hypertension artérielle est définie par une pression artérielle systolique supérieure ou égale "
            "à 140 mmHg et/ou une pression diastolique supérieure ou égale à 90 mmHg, mesurée en consultation.")
PASSAGE_2 = ("Une tension élevée correspond à une systolique d'au moins 140 et une diastolique d'au moins 90, "
             "selon les mesures faites chez le médecin.")


def test_fidelity_measure_on_two_examples():
    assert normalise_for_fidelity("Systé-mique, ÉTIOLOGIE ; d'Œdème") == "syste mique etiologie d œdeme"
    clean = character_overlap(PASSAGE_1, SOURCE_1)
    rewritten = character_overlap(PASSAGE_2, SOURCE_2)
    assert clean >= 0.95          # hyphen repaired, reference and caption removed: still verbatim
    assert rewritten < 0.80       # paraphrase: much of it is not in the source
    assert character_overlap(SOURCE_2, SOURCE_2) == 1.0
    dist = fidelity_distribution([clean, rewritten, 1.0, 0.3], [0.99, 0.95, 0.90, 0.80, 0.50])
    assert dist[">=95%"] == 0.5 and dist[">=50%"] == pytest.approx(0.75 if rewritten >= 0.5 else 0.5)
    assert list(dist)[1:] == [">=99%", ">=95%", ">=90%", ">=80%", ">=50%"]


# --------------------------------------------------------------------------- segmentation

def test_segmentation_cuts_at_paragraph_ends():
    paras = [f"Paragraphe {i}. " + " ".join(["mot"] * 40) + "." for i in range(10)]
    text = "\n\n".join(paras)
    count = TokenCounter()
    chunks = segment_text(text, target_tokens=100, count=count)
    assert len(chunks) == 5
    assert all(c.split("\n\n")[0].startswith("Paragraphe") for c in chunks)
    assert "\n\n".join(chunks) == text  # nothing lost, cuts only between paragraphs
    assert all(count(c) <= 100 for c in chunks)
