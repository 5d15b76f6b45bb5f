"""The shared LLM layer: JSON extraction, validated generation with retries, backends."""

from __future__ import annotations

import pytest

from mcbio.llm import (
    LLMBackend,
    LLMConfig,
    build_backend,
    extract_json_object,
    generate_structured,
    load_prompt,
    register_rule_responder,
)


def test_extract_json_object_tolerates_prose_and_fences():
    assert extract_json_object('Voici la réponse :\n```json\n{"a": 1, "b": "x"}\n```\nBonne journée') == {"a": 1, "b": "x"}
    assert extract_json_object('Sure! {"edu": 7} hope it helps') == {"edu": 7}


@pytest.mark.parametrize(
    "answer, message",
    [
        ('{"passages": ["Le patient', "truncated JSON"),
        ("Je ne peux pas répondre.", "no JSON object"),
        ('{"edu": 7,, "cont": 3}', "invalid JSON"),
        ('[{"edu": 7}]', "array"),
    ],
)
def test_extract_json_object_names_the_problem(answer, message):
    with pytest.raises(ValueError, match=message):
        extract_json_object(answer)


class ScriptedBackend(LLMBackend):
    """Answers from a per-prompt script, one entry per attempt; records what it was asked."""

    name = "scripted"

    def __init__(self, script):
        self.script = {k: list(v) for k, v in script.items()}
        self.calls = []

    def generate(self, prompts, json_schema=None, task=None):
        self.calls.append(list(prompts))
        return [self.script[p.split("\n")[0]].pop(0) for p in prompts]


def parse_value(answer):
    obj = extract_json_object(answer)
    if "v" not in obj:
        raise ValueError("missing key 'v'")
    return obj["v"]


def test_generate_structured_retries_only_failures_then_sets_aside():
    backend = ScriptedBackend({
        "good": ['{"v": 1}'],
        "late": ['{"v": 2', 'Voilà : {"v": 2}'],
        "bad": ['{"w": 0}', "désolé", '{"v": '],
    })
    results = generate_structured(backend, [(p, parse_value) for p in ("good", "late", "bad")], None,
                                  max_retries=2, task="t")
    assert [r.value for r in results] == [1, 2, None]
    assert [r.attempts for r in results] == [1, 2, 3]
    assert results[2].error.startswith("truncated JSON") and len(results[2].raw) == 3
    assert [len(c) for c in backend.calls] == [3, 2, 1]
    # A retry tells the model why its previous answer was rejected.
    assert "missing key 'v'" in backend.calls[1][1]


def expect(wanted):
    """A parser that accepts only ``{"v": wanted}``: it fails if handed another prompt's answer."""

    def parse(answer):
        value = parse_value(answer)
        if value != wanted:
            raise ValueError(f"expected {wanted}, got {value}")
        return value

    return parse


class ReorderingBackend(LLMBackend):
    """Answers each batch in order; the answer to prompt ``k`` is right from attempt ``fix_at[k]`` on."""

    name = "reordering"

    def __init__(self, fix_at):
        self.fix_at = fix_at
        self.asked = {}
        self.calls = []

    def generate(self, prompts, json_schema=None, task=None):
        self.calls.append(list(prompts))
        out = []
        for p in prompts:
            key = p.split("\n")[0]
            n = self.asked[key] = self.asked.get(key, 0) + 1
            out.append('{"v": %d}' % (int(key[1:]) if n >= self.fix_at[key] else -1))
        return out


def test_generate_structured_parses_each_answer_with_its_own_prompts_parser():
    """Each request's parse sees only its own answers, across retries that shrink and reorder the batch,
    whatever the prompts look like (equal prompts, one a prefix of another)."""
    fix_at = {"p1": 1, "p2": 3, "p3": 2, "p12": 1}
    backend = ReorderingBackend(fix_at)
    seen = {}

    def tracking(name, wanted):
        inner = expect(wanted)

        def parse(answer):
            seen.setdefault(name, []).append(answer)
            return inner(answer)

        return parse

    requests = [("p2", tracking("a", 2)), ("p1", tracking("b", 1)), ("p3", tracking("c", 3)),
                ("p12", tracking("d", 12))]
    results = generate_structured(backend, requests, None, max_retries=2)
    assert [r.value for r in results] == [2, 1, 3, 12] and all(r.ok for r in results)
    assert [r.attempts for r in results] == [3, 1, 2, 1]
    assert seen == {"a": ['{"v": -1}', '{"v": -1}', '{"v": 2}'], "b": ['{"v": 1}'],
                    "c": ['{"v": -1}', '{"v": 3}'], "d": ['{"v": 12}']}
    assert [[p.split("\n")[0] for p in c] for c in backend.calls] == [["p2", "p1", "p3", "p12"], ["p2", "p3"], ["p2"]]
    # The same prompt twice, with different checks: each answer is judged by its own request.
    same = generate_structured(ScriptedBackend({"q": ['{"v": 1}', '{"v": 2}', '{"v": 2}', '{"v": 1}']}),
                               [("q", expect(2)), ("q", expect(1))], None, max_retries=1)
    assert [r.value for r in same] == [2, 1] and [r.attempts for r in same] == [2, 2]


def test_generate_structured_needs_prompt_parse_pairs():
    backend = ScriptedBackend({"good": ['{"v": 1}']})
    with pytest.raises(TypeError, match="request 0 is not a \\(prompt, parse\\) pair"):
        generate_structured(backend, ["good"], None, max_retries=0)
    assert backend.calls == []


def test_rules_backend_dispatches_on_task_and_rejects_unknown_tasks():
    register_rule_responder("test_echo_length")(lambda prompt: '{"v": %d}' % len(prompt))
    backend = build_backend(LLMConfig(backend="rules"))
    assert backend.generate(["abc", "de"], task="test_echo_length") == ['{"v": 3}', '{"v": 2}']
    with pytest.raises(ValueError, match="no rule responder registered for task 'nope'"):
        backend.generate(["x"], task="nope")
    assert "NOT AN LLM" in type(backend).__doc__


def test_load_prompt_names_missing_prompt():
    assert "{text}" in load_prompt("curation_annotate")
    with pytest.raises(FileNotFoundError, match="Available prompts"):
        load_prompt("does_not_exist")


def test_backends_need_local_models(tmp_path):
    with pytest.raises(FileNotFoundError, match="llm.model: not set"):
        build_backend(LLMConfig(backend="transformers", model=None))
    with pytest.raises(FileNotFoundError, match="llm.model: .*missing does not exist"):
        build_backend(LLMConfig(backend="transformers", model=str(tmp_path / "missing")))
    with pytest.raises(FileNotFoundError, match="llm.env: no LLM environment"):
        build_backend(LLMConfig(backend="vllm", model=str(tmp_path), env=str(tmp_path / "no-env")))


def test_transformers_backend_garbage_answers_are_set_aside(tmp_path, tiny_tokenizer):
    """A tiny random GPT-2 answers garbage: every prompt ends with an error, nothing raises."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = tiny_tokenizer
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=16, n_layer=1, n_head=2,
                                       eos_token_id=tok.sep_token_id, bos_token_id=tok.cls_token_id))
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    cfg = LLMConfig(backend="transformers", model=str(tmp_path), max_new_tokens=8, batch_size=2, max_retries=1)
    backend = build_backend(cfg)
    answers = backend.generate(["Bonjour", "Le patient est fébrile"])
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    results = generate_structured(backend, [("Réponds en JSON", parse_value), ("Encore", parse_value)], None,
                                  cfg.max_retries)
    assert all(r.value is None and r.error and r.attempts == 2 for r in results)
