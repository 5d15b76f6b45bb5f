"""Settings of the LLM layer, shared by the curation and OntoBook pipelines."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

BACKENDS = ("vllm", "transformers", "rules")


@dataclass
class LLMConfig:
    # vllm: production on GPU nodes (own environment); transformers: a local causal LM on
    # CPU/GPU; rules: deterministic rule-based answers, NOT an LLM (end-to-end tries only).
    backend: str = field(default="vllm", metadata={"choices": BACKENDS})
    # Local model folder. Never a hub name: nothing is downloaded at run time.
    model: Optional[str] = None
    max_new_tokens: int = 1024
    temperature: float = 0.0
    # Extra attempts for prompts whose answer fails validation (attempts = 1 + max_retries).
    max_retries: int = 2
    batch_size: int = 16
    tensor_parallel_size: int = 1
    # Constrain decoding to the answer's JSON schema where the backend can (vllm).
    guided_json: bool = True
