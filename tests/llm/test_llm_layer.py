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
    results = generate_structured(backend, ["good", "late", "bad"], parse_value, None, max_retries=2, task="t")
    assert [r.value for r in results] == [1, 2, None]
    assert [r.attempts for r in results] == [1, 2, 3]
    assert results[2].error.startswith("truncated JSON") and len(results[2].raw) == 3
    assert [len(c) for c in backend.calls] == [3, 2, 1]
    # A retry tells the model why its previous answer was rejected.
    assert "missing key 'v'" in backend.calls[1][1]


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
    with pytest.raises(ValueError, match="llm.model"):
        build_backend(LLMConfig(backend="transformers", model=None))
    with pytest.raises(FileNotFoundError, match="not found"):
        build_backend(LLMConfig(backend="transformers", model=str(tmp_path / "missing")))


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
    results = generate_structured(backend, ["Réponds en JSON", "Encore"], parse_value, None, cfg.max_retries)
    assert all(r.value is None and r.error and r.attempts == 2 for r in results)
