"""The two LLM tasks of the curation pipeline: answer schemas, validators, prompts, and the
rule-based responders the ``rules`` backend uses (which are NOT an LLM: see below)."""

from __future__ import annotations

import json
import re
from typing import Dict, List

from mcbio.config.curation import CONTENT_TYPES, SCORE_KEYS
from mcbio.llm import extract_json_object, load_prompt, register_rule_responder

EXTRACT_TASK = "curation_extract"
ANNOTATE_TASK = "curation_annotate"

EXTRACTION_SCHEMA: dict = {
    "type": "object",
    "properties": {"passages": {"type": "array", "items": {"type": "string", "minLength": 1}}},
    "required": ["passages"],
    "additionalProperties": False,
}

ANNOTATION_SCHEMA: dict = {
    "type": "object",
    "properties": {
        # An enum, not minimum/maximum: every engine's grammar enforces it (llama-cpp-python's schema
        # converter ignores integer bounds and lets a small model answer 45).
        **{k: {"type": "integer", "enum": list(range(1, 11))} for k in SCORE_KEYS},
        "type": {"type": "string", "enum": list(CONTENT_TYPES)},
    },
    "required": [*SCORE_KEYS, "type"],
    "additionalProperties": False,
}


# --------------------------------------------------------------------------- validation


def parse_extraction(answer: str) -> List[str]:
    obj = extract_json_object(answer)
    if "passages" not in obj:
        raise ValueError(f"missing key 'passages' (got keys: {', '.join(sorted(obj)) or 'none'})")
    passages = obj["passages"]
    if not isinstance(passages, list):
        raise ValueError(f"'passages' must be a list, got {type(passages).__name__}")
    out = []
    for i, p in enumerate(passages):
        if not isinstance(p, str):
            raise ValueError(f"'passages[{i}]' must be a string, got {type(p).__name__}")
        if p.strip():
            out.append(p.strip())
    return out


def _score(obj: dict, key: str) -> int:
    if key not in obj:
        raise ValueError(f"missing key '{key}'")
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ValueError(f"'{key}' must be an integer from 1 to 10, got {value!r}")
    if not 1 <= value <= 10:
        raise ValueError(f"'{key}' = {value} is out of range 1-10")
    return int(value)


def parse_annotation(answer: str) -> Dict[str, object]:
    obj = extract_json_object(answer)
    labels: Dict[str, object] = {k: _score(obj, k) for k in SCORE_KEYS}
    if "type" not in obj:
        raise ValueError("missing key 'type'")
    if obj["type"] not in CONTENT_TYPES:
        raise ValueError(f"'type' = {obj['type']!r} is not one of: {', '.join(CONTENT_TYPES)}")
    labels["type"] = obj["type"]
    return labels


# --------------------------------------------------------------------------- prompts


def extraction_prompt(text: str, max_words: int, name: str = "curation_extract") -> str:
    return load_prompt(name).format(text=text, max_words=max_words)


def annotation_prompt(text: str, name: str = "curation_annotate") -> str:
    return load_prompt(name).format(text=text)


def _between(prompt: str, tag: str) -> str:
    m = re.search(rf"<<<{tag}\n(.*)\n{tag}>>>", prompt, re.DOTALL)
    if not m:
        raise ValueError(f"prompt has no <<<{tag} ... {tag}>>> block")
    return m.group(1)


# --------------------------------------------------------------------------- rules (not an LLM)
# Deterministic stand-ins so the pipeline runs end to end without weights. They clean and
# label with a few regular expressions; their labels are NOT LLM judgements.

_CAPTION = re.compile(r"^(figure|fig\.|tableau|table|graphique|annexe)\s*[0-9ivx]+\b", re.IGNORECASE)
_REFERENCES_HEADING = re.compile(r"^(références|references|bibliographie|remerciements)\b", re.IGNORECASE)
_PAGE_NUMBER = re.compile(r"^(page\s*)?\d+(\s*/\s*\d+)?$", re.IGNORECASE)
_REFERENCE_LINE = re.compile(r"^\[?\d+[\].]\s+.*(et al|doi|\b(19|20)\d\d\b)", re.IGNORECASE)
_MAX_WORDS = re.compile(r"au plus (\d+) mots")


def _clean_paragraphs(text: str) -> List[str]:
    text = re.sub(r"(\w)-\n(\w)", r"\1\2", text)  # words hyphenated at line ends
    blocks = re.split(r"\n\s*\n", text) if re.search(r"\n\s*\n", text) else text.split("\n")
    kept: List[str] = []
    for block in blocks:
        para = " ".join(block.split())
        if not para:
            continue
        if _REFERENCES_HEADING.match(para):
            break
        if _CAPTION.match(para) or _PAGE_NUMBER.match(para) or _REFERENCE_LINE.match(para):
            continue
        if len(para.split()) < 10 and not para.rstrip().endswith((".", "!", "?", ":")):
            continue  # a heading or a running header
        kept.append(para)
    return kept


def _split_long(para: str, max_words: int) -> List[str]:
    from mcbio.data.curation.text import sentences

    if len(para.split()) <= max_words:
        return [para]
    pieces, current = [], []
    for sent in sentences(para):
        if current and len(" ".join(current + [sent]).split()) > max_words:
            pieces.append(" ".join(current))
            current = []
        current.append(sent)
    if current:
        pieces.append(" ".join(current))
    return pieces


@register_rule_responder(EXTRACT_TASK)
def rules_extract(prompt: str) -> str:
    text = _between(prompt, "DOCUMENT")
    m = _MAX_WORDS.search(prompt)
    max_words = int(m.group(1)) if m else 600
    target = max(1, max_words // 2)
    passages: List[str] = []
    current: List[str] = []
    for para in _clean_paragraphs(text):
        for piece in _split_long(para, max_words):
            size = len(" ".join(current).split())
            if current and size + len(piece.split()) > max_words:
                passages.append("\n\n".join(current))
                current = []
            current.append(piece)
            if len(" ".join(current).split()) >= target:
                passages.append("\n\n".join(current))
                current = []
    if current:
        passages.append("\n\n".join(current))
    return json.dumps({"passages": passages}, ensure_ascii=False)


_TYPE_CUES = [
    ("drug_information", r"\b(comprimés?|gélules?|posologie|notice|effets indésirables|pharmacien|surdosage|excipients?|mg/ml)\b"),
    ("patient_case", r"\b(patiente?|(?:âgée?|femme|homme|enfant|nourrisson) de \d+ ans|\d+ ans|admise?|hospitalisée?|"
                     r"l'examen|examen clinique|bilan|biopsie|évolution|observation)\b"),
    ("research_methodology", r"\b(méthodes?|randomisée?|cohorte|critères d'inclusion|échantillon|analyse statistique)\b"),
    ("research_findings", r"\b(résultats?|p\s*[<=]\s*0[.,]\d+|significati\w+|IC\s*95|odds ratio)\b"),
    ("clinical_guidance", r"\b(recommandations?|il est recommandé|prise en charge|conduite à tenir|doit être)\b"),
    ("policy_administrative", r"\b(décret|arrêté|loi|ministère|réglementation|assurance maladie)\b"),
    ("background_review", r"\b(revue|littérature|historique|depuis les années|état des connaissances)\b"),
    ("medical_knowledge", r"\b(maladie|syndrome|pathologie|diagnostic|traitement|physiopathologie|symptômes?)\b"),
]
_MEDICAL_TERM = re.compile(
    r"\w+(ite|ose|émie|ectomie|logie|thérapie|pathie|algie|plasie|ome|scopie|graphie|cytes?|ique)s?\b", re.IGNORECASE
)


def _clip(x: float) -> int:
    return int(min(10, max(1, round(x))))


@register_rule_responder(ANNOTATE_TASK)
def rules_annotate(prompt: str) -> str:
    text = _between(prompt, "PASSAGE")
    lowered = text.lower()
    hits = {name: len(re.findall(pat, lowered, re.IGNORECASE)) for name, pat in _TYPE_CUES}
    best = max(hits, key=lambda k: hits[k])
    kind = best if hits[best] > 0 else "other"
    tokens = text.split()
    n = max(1, len(tokens))
    term_density = len(_MEDICAL_TERM.findall(text)) / n
    sents = [s for s in re.split(r"[.!?]", text) if s.strip()]
    mean_sent = n / max(1, len(sents))
    cue_density = sum(hits.values()) / n
    term = _clip(2 + 40 * term_density)
    cont = _clip(2 + 30 * term_density + 60 * cue_density + min(3, n / 150))
    writ = _clip(9 - abs(mean_sent - 20) / 4)
    edu = _clip((cont + writ) / 2 + (1 if kind in ("medical_knowledge", "clinical_guidance", "background_review") else 0))
    return json.dumps({"edu": edu, "cont": cont, "writ": writ, "term": term, "type": kind})
