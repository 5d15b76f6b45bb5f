"""LLM backends: one interface, ``generate(prompts, json_schema, task) -> answers``.

* ``vllm``: production on GPU nodes, guided JSON decoding; imported only when built.
* ``transformers``: a local causal LM folder, greedy decoding, CPU or GPU.
* ``rules``: deterministic rule-based responders registered per task. Not an LLM.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Dict, List, Optional

from mcbio.llm.config import BACKENDS, LLMConfig

log = logging.getLogger(__name__)

RuleResponder = Callable[[str], str]
_RULE_RESPONDERS: Dict[str, RuleResponder] = {}


def register_rule_responder(task: str) -> Callable[[RuleResponder], RuleResponder]:
    """Decorator: ``fn(prompt_text) -> answer_text`` answers ``task`` for the rules backend."""

    def decorator(fn: RuleResponder) -> RuleResponder:
        _RULE_RESPONDERS[task] = fn
        return fn

    return decorator


class LLMBackend:
    """One raw answer per prompt, in order."""

    name = "base"

    def generate(
        self, prompts: List[str], json_schema: Optional[dict] = None, task: Optional[str] = None
    ) -> List[str]:
        raise NotImplementedError


class RulesBackend(LLMBackend):
    """Deterministic rule-based answers. THIS IS NOT AN LLM.

    It lets a pipeline run end to end on a laptop with no model weights: each task's
    answers come from a hand-written responder registered with
    :func:`register_rule_responder` by the pipeline module that owns the task. Corpora
    built with it carry rule-based labels, not LLM labels.
    """

    name = "rules"

    def __init__(self) -> None:
        log.warning("LLM backend 'rules': answers come from deterministic rules, NOT from an LLM")

    def generate(self, prompts, json_schema=None, task=None):
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


class TransformersBackend(LLMBackend):
    """A local causal LM (AutoModelForCausalLM), greedy unless temperature > 0.

    The JSON schema is not enforced during decoding here; answers are validated after.
    """

    name = "transformers"

    def __init__(self, cfg: LLMConfig) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not cfg.model:
            raise ValueError("llm.model: the transformers backend needs a local model folder")
        path = Path(cfg.model)
        if not path.is_dir():
            raise FileNotFoundError(f"llm.model: model folder not found: {path}")
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

    def generate(self, prompts, json_schema=None, task=None):
        answers: List[str] = []
        sampling = self.cfg.temperature > 0
        for start in range(0, len(prompts), self.cfg.batch_size):
            batch = [self._render(p) for p in prompts[start : start + self.cfg.batch_size]]
            enc = self.tokenizer(batch, return_tensors="pt", padding=True).to(self.device)
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
            answers.extend(self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
        return answers


class VLLMBackend(LLMBackend):
    """vLLM offline engine with guided JSON decoding (GPU nodes, vLLM's own environment).

    The offline ``vllm.LLM`` engine fits this batch interface; datatrove's
    ``InferenceRunner`` (a server plus async rollouts per document) is the alternative
    for pipelines that are a single inference step.
    """

    name = "vllm"

    def __init__(self, cfg: LLMConfig) -> None:
        try:
            import vllm
        except ImportError as err:
            raise ImportError(
                "llm.backend=vllm needs vLLM (pip install 'mcbio[vllm]' in the GPU environment); "
                "on CPU use llm.backend=transformers or rules"
            ) from err
        if not cfg.model:
            raise ValueError("llm.model: the vllm backend needs a local model folder")
        if not Path(cfg.model).is_dir():
            raise FileNotFoundError(f"llm.model: model folder not found: {cfg.model}")
        self.cfg = cfg
        self._vllm = vllm
        self.llm = vllm.LLM(model=cfg.model, tensor_parallel_size=cfg.tensor_parallel_size)

    def _sampling_params(self, json_schema: Optional[dict]):
        kwargs = dict(temperature=self.cfg.temperature, max_tokens=self.cfg.max_new_tokens)
        if json_schema is not None and self.cfg.guided_json:
            # vLLM renamed guided decoding to structured outputs (>= 0.10.2); accept both.
            try:
                from vllm.sampling_params import StructuredOutputsParams

                kwargs["structured_outputs"] = StructuredOutputsParams(json=json.dumps(json_schema))
            except ImportError:
                from vllm.sampling_params import GuidedDecodingParams

                kwargs["guided_decoding"] = GuidedDecodingParams(json=json_schema)
        return self._vllm.SamplingParams(**kwargs)

    def generate(self, prompts, json_schema=None, task=None):
        conversations = [[{"role": "user", "content": p}] for p in prompts]
        outputs = self.llm.chat(conversations, self._sampling_params(json_schema), use_tqdm=False)
        return [o.outputs[0].text for o in outputs]


def build_backend(cfg: LLMConfig) -> LLMBackend:
    if cfg.backend == "rules":
        return RulesBackend()
    if cfg.backend == "transformers":
        return TransformersBackend(cfg)
    if cfg.backend == "vllm":
        return VLLMBackend(cfg)
    raise ValueError(f"llm.backend: unknown backend '{cfg.backend}'. Choose one of: {', '.join(BACKENDS)}")
