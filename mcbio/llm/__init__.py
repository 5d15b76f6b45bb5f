"""The LLM layer shared by the curation and OntoBook pipelines.

``build_backend(LLMConfig)`` gives a backend (vllm | transformers | rules) whose
``generate(prompts, json_schema, task)`` returns raw answers; ``generate_structured``
takes ``(prompt, parse)`` requests, validates each answer with its own prompt's ``parse``,
retries the failures and sets aside what still fails.
"""

from mcbio.llm.backends import (
    LLMBackend,
    RulesBackend,
    TransformersBackend,
    VLLMBackend,
    build_backend,
    register_rule_responder,
)
from mcbio.llm.config import LLMConfig
from mcbio.llm.json_answer import extract_json_object
from mcbio.llm.prompts import load_prompt
from mcbio.llm.structured import StructuredResult, generate_structured

__all__ = [
    "LLMBackend",
    "LLMConfig",
    "RulesBackend",
    "StructuredResult",
    "TransformersBackend",
    "VLLMBackend",
    "build_backend",
    "extract_json_object",
    "generate_structured",
    "load_prompt",
    "register_rule_responder",
]
