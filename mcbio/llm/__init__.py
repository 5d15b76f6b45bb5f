"""The LLM layer shared by the curation and OntoBook pipelines.

``build_backend(LLMConfig)`` gives a backend (vllm | llamacpp | transformers | rules) whose
``generate(prompts, json_schema, task)`` returns raw answers and counts its tokens and time in
``usage``; ``generate_structured`` takes ``(prompt, parse)`` requests, validates each answer with
its own prompt's ``parse``, retries the failures and sets aside what still fails. The engines of
``vllm`` and ``llamacpp`` run in the LLM environment (:mod:`mcbio.llm.env`) on a model prepared by
:mod:`mcbio.llm.models`; ``python -m mcbio.llm setup`` builds both.
"""

from mcbio.llm.backends import (
    GenerationUsage,
    LLMBackend,
    RulesBackend,
    ServerBackend,
    TransformersBackend,
    build_backend,
    register_rule_responder,
)
from mcbio.llm.config import LLMConfig
from mcbio.llm.json_answer import extract_json_object
from mcbio.llm.prompts import load_prompt
from mcbio.llm.structured import StructuredResult, generate_structured, validation_counts

__all__ = [
    "GenerationUsage",
    "LLMBackend",
    "LLMConfig",
    "RulesBackend",
    "ServerBackend",
    "StructuredResult",
    "TransformersBackend",
    "build_backend",
    "extract_json_object",
    "generate_structured",
    "load_prompt",
    "register_rule_responder",
    "validation_counts",
]
