"""Rephrasing a walk into prose through the shared LLM layer, and checking the answer.

An answer is kept only when its text cites every code (and drug name) of the walk, cites
no other code, and its relation list is exactly the walk's relations (up to direction:
``A narrower B`` equals ``B broader A``). Failures are retried by ``generate_structured``
with the rejection reason, then counted by reason and dropped.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Dict, List, Optional, Set, Tuple

from mcbio.data.ontobook.graph import EDGE_TYPES, INVERSE, SIBLING, normalise_code
from mcbio.data.ontobook.verbalise import (
    ONTOLOGY_NAMES,
    RELATION_GLOSSARY,
    node_ref,
    verbalise_payload,
    walk_lines,
)
from mcbio.llm import extract_json_object, load_prompt, register_rule_responder

TASK = "ontobook_rephrase"
FAILURE_REASONS = ("malformed", "missing_code", "added_code", "missing_name", "missing_relation", "unknown_relation")
# Canonical direction of each relation when comparing relation sets.
_CANONICAL = {"narrower", "has_manifestation", "causes", "excludes", "has_drug", SIBLING}

ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "text": {"type": "string"},
        "relations": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "source": {"type": "string"},
                    "relation": {"type": "string", "enum": list(EDGE_TYPES)},
                    "target": {"type": "string"},
                },
                "required": ["source", "relation", "target"],
            },
        },
    },
    "required": ["text", "relations"],
}

_PAYLOAD_RE = re.compile(r"<parcours>\s*(.*?)\s*</parcours>", re.S)


@dataclass
class RephraseAnswer:
    text: str
    relations: List[Tuple[str, str, str]]


class VerificationError(ValueError):
    """The answer does not keep the walk; ``str()`` starts with the reason tag."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def failure_reason(error: str) -> str:
    tag = error.split(":", 1)[0].strip()
    return tag if tag in FAILURE_REASONS else "malformed"


def build_prompt(payload: dict, template: Optional[str] = None) -> str:
    template = template if template is not None else load_prompt(TASK)
    glossary = "\n".join(f"- {t} : {RELATION_GLOSSARY[t]}" for t in sorted({s[1] for s in payload["steps"]}))
    return template.format(
        ontology_name=ONTOLOGY_NAMES.get(payload["ontology"], payload["ontology"]),
        walk_lines=walk_lines(payload),
        relation_glossary=glossary,
        walk_json=json.dumps(payload, ensure_ascii=False),
    )


def parse_answer(raw: str) -> RephraseAnswer:
    try:
        obj = extract_json_object(raw)
    except ValueError as err:
        raise VerificationError("malformed", str(err)) from None
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():
        raise VerificationError("malformed", "'text' must be a non-empty string")
    relations = obj.get("relations")
    if not isinstance(relations, list):
        raise VerificationError("malformed", "'relations' must be a list")
    out = []
    for i, rel in enumerate(relations):
        if not isinstance(rel, dict) or not all(isinstance(rel.get(k), str) for k in ("source", "relation", "target")):
            raise VerificationError("malformed", f"relations[{i}] needs string 'source', 'relation', 'target'")
        if rel["relation"] not in INVERSE:
            raise VerificationError("malformed", f"relations[{i}]: unknown relation {rel['relation']!r}")
        out.append((rel["source"], rel["relation"], rel["target"]))
    return RephraseAnswer(text.strip(), out)


def fold(text: str) -> str:
    """Lower case, no diacritics, single spaces: how drug names are looked for in the text."""
    text = unicodedata.normalize("NFKD", text.lower())
    return re.sub(r"\s+", " ", "".join(ch for ch in text if not unicodedata.combining(ch))).strip()


def _ref_key(ref: str) -> str:
    return normalise_code(ref) if re.fullmatch(r"[A-Za-z0-9.+\- ]+", ref) and any(ch.isdigit() for ch in ref) \
        else "name:" + fold(ref)


def _canonical(source: str, relation: str, target: str) -> Tuple[str, str, str]:
    a, b = _ref_key(source), _ref_key(target)
    if relation == SIBLING:
        return (min(a, b), SIBLING, max(a, b))
    if relation in _CANONICAL:
        return (a, relation, b)
    return (b, INVERSE[relation], a)


def walk_relations(payload: dict) -> Set[Tuple[str, str, str]]:
    nodes = payload["nodes"]
    return {_canonical(node_ref(nodes[s]), t, node_ref(nodes[o])) for s, t, o in payload["steps"]}


def _code_present(code: str, text: str, found: Set[str], code_regex: re.Pattern) -> bool:
    if code_regex.fullmatch(code):
        return normalise_code(code) in found
    # Codes the prose pattern does not cover (ATC level-1 letters, CCAM chapter numbers):
    # whole-token presence, not as the head of a longer code ("E11" inside "E11.2").
    return re.search(rf"(?<![\w.]){re.escape(code)}(?![\w]|\.\d)", text) is not None


def verify_answer(answer: RephraseAnswer, payload: dict, code_regex: re.Pattern, check_relations: bool = True) -> None:
    """Raise VerificationError (reason-tagged) unless the answer keeps every code and relation."""
    text = answer.text
    found = {normalise_code(m.group(0)) for m in code_regex.finditer(text)}
    nodes = payload["nodes"].values()
    codes = [n["code"] for n in nodes if n["code"]]
    missing = [c for c in codes if not _code_present(c, text, found, code_regex)]
    if missing:
        raise VerificationError("missing_code", ", ".join(missing))
    # Code-like tokens inside the walk's own labels ("vitamine B12") are not added codes.
    in_labels = {normalise_code(m.group(0)) for n in nodes for m in code_regex.finditer(n["label"])}
    added = sorted(found - {normalise_code(c) for c in codes} - in_labels)
    if added:
        raise VerificationError("added_code", ", ".join(added))
    folded = fold(text)
    missing_names = [n["label"] for n in nodes if not n["code"] and fold(n["label"]) not in folded]
    if missing_names:
        raise VerificationError("missing_name", ", ".join(missing_names))
    if check_relations:
        expected = walk_relations(payload)
        given = {_canonical(*rel) for rel in answer.relations}
        if expected - given:
            raise VerificationError("missing_relation", "; ".join(" ".join(r) for r in sorted(expected - given)))
        if given - expected:
            raise VerificationError("unknown_relation", "; ".join(" ".join(r) for r in sorted(given - expected)))


def make_parser(payload: dict, code_regex: re.Pattern, check_relations: bool = True):
    """The ``parse`` of this walk's ``(prompt, parse)`` request to ``generate_structured``: an answer
    that is malformed or unfaithful to ``payload`` raises ValueError."""

    def parse(raw: str) -> RephraseAnswer:
        answer = parse_answer(raw)
        verify_answer(answer, payload, code_regex, check_relations)
        return answer

    return parse


def payload_from_prompt(prompt: str) -> dict:
    match = _PAYLOAD_RE.search(prompt)
    if match is None:
        raise ValueError("no <parcours>...</parcours> block in the prompt")
    return json.loads(match.group(1))


def rules_answer(payload: dict) -> Dict[str, object]:
    intro = f"Ce passage parcourt {ONTOLOGY_NAMES.get(payload['ontology'], payload['ontology'])}."
    nodes = payload["nodes"]
    relations = [{"source": node_ref(nodes[s]), "relation": t, "target": node_ref(nodes[o])}
                 for s, t, o in payload["steps"]]
    return {"text": f"{intro} {verbalise_payload(payload)}", "relations": relations}


@register_rule_responder(TASK)
def rules_responder(prompt: str) -> str:
    """Rule-based rephrasing, NOT an LLM: fixed French templates over the walk in the prompt."""
    return json.dumps(rules_answer(payload_from_prompt(prompt)), ensure_ascii=False)
