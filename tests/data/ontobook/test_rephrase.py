"""Code-preservation verification, the rules responder, and rephrasing with retries and drops."""

import json
import random

import pytest

from mcbio.config.ontobook import RephraseConfig
from mcbio.data.ontobook.build import rephrase_walks
from mcbio.data.ontobook.rephrase import (
    build_prompt,
    parse_answer,
    rules_answer,
    rules_responder,
    verify_answer,
    VerificationError,
)
from mcbio.data.ontobook.verbalise import verbalise_payload, walk_payload
from mcbio.data.ontobook.walks import Walk
from mcbio.llm import LLMBackend, LLMConfig, build_backend


@pytest.fixture()
def cim10_walk(cim10_graph):
    steps = (("E11", "narrower", "E112"), ("E112", "sibling", "E119"), ("E119", "narrower", "E119+0"))
    return Walk("cim10", "hierarchy", "E11", steps)


@pytest.fixture()
def payload(cim10_walk, cim10_graph):
    return walk_payload(cim10_walk, cim10_graph)


def _check(answer: dict, payload, graph):
    verify_answer(parse_answer(json.dumps(answer, ensure_ascii=False)), payload, graph.code_regex)


def _reason(answer, payload, graph):
    with pytest.raises(VerificationError) as err:
        _check(answer, payload, graph)
    return err.value.reason


def test_rules_answer_keeps_everything(payload, cim10_graph):
    answer = rules_answer(payload)
    _check(answer, payload, cim10_graph)
    for code in ("E11", "E11.2", "E11.9", "E11.9+0"):
        assert code in answer["text"]


def test_dropped_code_fails(payload, cim10_graph):
    answer = rules_answer(payload)
    answer["text"] = answer["text"].replace("E11.2", "cette forme")
    assert _reason(answer, payload, cim10_graph) == "missing_code"


def test_category_dropped_while_its_subcode_stays_fails(payload, cim10_graph):
    answer = rules_answer(payload)
    text = answer["text"]
    answer["text"] = text.replace("(E11)", "").replace("E11 ", "Il ")
    assert "E11.2" in answer["text"] and _reason(answer, payload, cim10_graph) == "missing_code"


def test_atc_level1_letter_is_checked_as_a_whole_token(atc_graph):
    walk = Walk("atc", "hierarchy", "N", (("N", "narrower", "N02"), ("N02", "narrower", "N02B")))
    payload = walk_payload(walk, atc_graph)
    answer = rules_answer(payload)
    _check(answer, payload, atc_graph)
    answer["text"] = answer["text"].replace("(N)", "")
    assert _reason(answer, payload, atc_graph) == "missing_code"  # "N02" does not count as "N"


def test_altered_code_fails(payload, cim10_graph):
    answer = rules_answer(payload)
    answer["text"] = answer["text"].replace("E11.2", "E11.3")
    assert _reason(answer, payload, cim10_graph) == "missing_code"
    # An altered code next to the right one is an added code.
    answer = rules_answer(payload)
    answer["text"] += " Voir aussi E11.3."
    assert _reason(answer, payload, cim10_graph) == "added_code"


def test_added_code_fails_in_any_spelling(payload, cim10_graph):
    for extra in ("A17.0", "A170", "I10", "A00-B99"):
        answer = rules_answer(payload)
        answer["text"] += f" Il est distinct de {extra}."
        assert _reason(answer, payload, cim10_graph) == "added_code", extra


def test_code_without_dot_is_accepted(payload, cim10_graph):
    answer = rules_answer(payload)
    answer["text"] = answer["text"].replace("E11.2", "E112")
    _check(answer, payload, cim10_graph)


def test_relations_must_match_up_to_direction(payload, cim10_graph):
    answer = rules_answer(payload)
    answer["relations"][0] = {"source": "E11.2", "relation": "broader", "target": "E11"}  # inverse form
    _check(answer, payload, cim10_graph)
    answer = rules_answer(payload)
    del answer["relations"][1]
    assert _reason(answer, payload, cim10_graph) == "missing_relation"
    answer = rules_answer(payload)
    answer["relations"].append({"source": "E11", "relation": "causes", "target": "E11.9"})
    assert _reason(answer, payload, cim10_graph) == "unknown_relation"


def test_malformed_answers(payload, cim10_graph):
    for raw in ("pas de JSON", '{"text": "E11"', '{"text": "", "relations": []}',
                '{"text": "x", "relations": [{"source": "E11", "relation": "treats", "target": "E112"}]}'):
        with pytest.raises(VerificationError) as err:
            parse_answer(raw)
        assert err.value.reason == "malformed"


def test_drug_names_must_be_kept(atc_graph):
    walk = Walk("atc", "drugs", "drug:DAFALGAN",
                (("drug:DAFALGAN", "drug_of", "N02BE01"), ("N02BE01", "has_drug", "drug:DOLIPRANE"),
                 ("N02BE01", "broader", "N02BE"), ("N02BE", "broader", "N02B")))
    payload = walk_payload(walk, atc_graph)
    answer = rules_answer(payload)
    _check(answer, payload, atc_graph)
    answer["text"] = answer["text"].replace("DOLIPRANE", "un autre produit")
    assert _reason(answer, payload, atc_graph) == "missing_name"


def test_rules_responder_reads_the_walk_from_the_prompt(payload):
    prompt = build_prompt(payload)
    assert "E11.9+0" in prompt and "<parcours>" in prompt
    answer = json.loads(rules_responder(prompt + "\n\nYour previous answer was rejected: x"))
    assert answer["text"].endswith(verbalise_payload(payload))


class ScriptedBackend(LLMBackend):
    """Answers each prompt from a script: first answers drop a code, later ones are faithful."""

    name = "scripted"

    def __init__(self, bad_first: int, always_bad=()):
        self.bad_first = bad_first
        self.always_bad = set(always_bad)
        self.calls = {}

    def generate(self, prompts, json_schema=None, task=None):
        out = []
        for prompt in prompts:
            base = prompt.split("\n\nYour previous answer was rejected:")[0]
            n = self.calls[base] = self.calls.get(base, 0) + 1
            answer = json.loads(rules_responder(prompt))
            payload = json.loads(base.split("<parcours>")[1].split("</parcours>")[0])
            if payload["start"] in self.always_bad or n <= self.bad_first:
                first_code = next(v["code"] for v in payload["nodes"].values() if v["code"])
                answer["text"] = answer["text"].replace(first_code, "ce code")
            out.append(json.dumps(answer, ensure_ascii=False))
        return out


def _items(graph, starts):
    from mcbio.data.ontobook.walks import random_walk

    items = []
    for i, start in enumerate(starts):
        w = random_walk(graph, start, {"narrower": 1, "sibling": 1, "broader": 1}, 3, random.Random(i))
        p = walk_payload(w, graph)
        items.append((w, p, verbalise_payload(p)))
    return items


def test_rephrase_retries_then_drops_and_counts(cim10_graph):
    items = _items(cim10_graph, ["A17", "E11", "M01"])
    cfg = RephraseConfig(llm=LLMConfig(backend="rules", max_retries=2), chunk_size=2)
    # Wrong on the first attempt, right on the retry: all kept.
    result = rephrase_walks(items, cim10_graph, ScriptedBackend(bad_first=1), cfg, progress=False)
    assert len(result.documents) == 3 and not result.failures and result.attempts == 6
    # One walk always loses a code: dropped after 1 + max_retries attempts and counted.
    result = rephrase_walks(items, cim10_graph, ScriptedBackend(bad_first=0, always_bad={"E11"}), cfg,
                            progress=False)
    assert [d["id"] for d in result.documents] == [f"ontobook-cim10-{items[i][0].key}" for i in (0, 2)]
    assert dict(result.failures) == {"missing_code": 1} and result.attempts == 5


class SwappingBackend(LLMBackend):
    """Answers each batch with faithful rephrasings of the same walks, in reversed order."""

    name = "swapping"

    def generate(self, prompts, json_schema=None, task=None):
        return [rules_responder(p) for p in reversed(prompts)]


def test_each_answer_is_checked_against_its_own_walk(cim10_graph):
    items = _items(cim10_graph, ["A17", "E11"])
    cfg = RephraseConfig(llm=LLMConfig(backend="rules", max_retries=1), chunk_size=2)
    # Each answer keeps another walk of the batch: faithful to that walk, unfaithful to its own.
    result = rephrase_walks(items, cim10_graph, SwappingBackend(), cfg, progress=False)
    assert result.documents == [] and dict(result.failures) == {"missing_code": 2} and result.attempts == 4
    # One walk per batch: every answer is its own walk's, and kept.
    one = RephraseConfig(llm=LLMConfig(backend="rules", max_retries=1), chunk_size=1)
    result = rephrase_walks(items, cim10_graph, SwappingBackend(), one, progress=False)
    assert [d["id"] for d in result.documents] == [f"ontobook-cim10-{w.key}" for w, _, _ in items]


def test_rules_backend_end_to_end_documents(cim10_graph):
    items = _items(cim10_graph, ["A17", "E11"])
    cfg = RephraseConfig(llm=LLMConfig(backend="rules"))
    result = rephrase_walks(items, cim10_graph, build_backend(cfg.llm), cfg, progress=False)
    doc = result.documents[0]
    assert set(doc) >= {"id", "text", "source", "ontology", "codes"}
    assert doc["source"] == "ontobook" and doc["ontology"] == "cim10"
    assert all(code in doc["text"] for code in doc["codes"])


def test_transformers_backend_garbage_is_dropped_as_malformed(tmp_path, tiny_tokenizer, cim10_graph):
    """A tiny random causal LM answers garbage: every walk is retried, then dropped and counted."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tiny_tokenizer), n_positions=4096, n_embd=16, n_layer=1,
                                       n_head=2, eos_token_id=tiny_tokenizer.sep_token_id,
                                       bos_token_id=tiny_tokenizer.cls_token_id))
    model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    cfg = RephraseConfig(llm=LLMConfig(backend="transformers", model=str(tmp_path), max_new_tokens=8,
                                       batch_size=2, max_retries=1))
    items = _items(cim10_graph, ["A17", "E11"])
    result = rephrase_walks(items, cim10_graph, build_backend(cfg.llm), cfg, progress=False)
    assert result.documents == [] and dict(result.failures) == {"malformed": 2} and result.attempts == 4
