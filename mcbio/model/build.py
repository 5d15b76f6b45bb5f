"""Build the encoder: a random ModernBERT from the config, or a local Hugging Face checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForMaskedLM, ModernBertConfig, ModernBertForMaskedLM, PreTrainedModel, PreTrainedTokenizerBase

from mcbio.config.schema import ModelConfig
from mcbio.model.backends import check_attention_backend, load_implementation, use_attention_backend


def modernbert_config(cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase) -> ModernBertConfig:
    if len(tokenizer) > cfg.vocab_size:
        raise ValueError(f"model.vocab_size={cfg.vocab_size} is smaller than the tokenizer's {len(tokenizer)} tokens")
    return ModernBertConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings,
        global_rope_theta=cfg.global_rope_theta,
        local_rope_theta=cfg.local_rope_theta,
        local_attention=cfg.local_attention,
        global_attn_every_n_layers=cfg.global_attn_every_n_layers,
        pad_token_id=tokenizer.pad_token_id,
        cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        # torch.compile of the reference code paths is a GPU optimisation; keep eager semantics.
        reference_compile=False,
    )


def build_masked_lm(cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase, seed: int) -> PreTrainedModel:
    """``model.init_from`` (local path, never downloaded) or a random ModernBERT seeded by ``seed``.

    The attention backend (``model.attn_implementation``) is checked before any weight is read.
    """
    check_attention_backend(cfg.attn_implementation, cfg.flash_attention_kernel)
    if cfg.init_from:
        path = Path(cfg.init_from)
        if not path.exists():
            raise FileNotFoundError(f"model.init_from: no checkpoint at {path}")
        model = AutoModelForMaskedLM.from_pretrained(
            str(path), local_files_only=True, attn_implementation=load_implementation(cfg.attn_implementation)
        )
        if len(tokenizer) > model.config.vocab_size:
            raise ValueError(f"tokenizer has {len(tokenizer)} tokens but {path} has vocab_size {model.config.vocab_size}")
        if hasattr(model.config, "reference_compile"):
            model.config.reference_compile = False
    else:
        torch.manual_seed(seed)
        config = modernbert_config(cfg, tokenizer)
        config._attn_implementation = load_implementation(cfg.attn_implementation)
        model = ModernBertForMaskedLM(config)
    use_attention_backend(model, cfg.attn_implementation, cfg.flash_attention_kernel)
    return model


def is_modernbert(model: PreTrainedModel) -> bool:
    return isinstance(model, ModernBertForMaskedLM)
