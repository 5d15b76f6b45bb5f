"""Which attention backend a ModernBERT runs: ``model.attn_implementation`` (+ ``model.flash_attention_kernel``).

``sdpa`` and ``eager`` are transformers' own. ``flash_attention_2`` and ``flex_attention``
are prepared here on a model that transformers built with SDPA, so that the weights, their
initialisation and the export are the same whatever the backend, and so that the
FlashAttention-2 path can run without flash_attn when its reference kernel is asked for
(:mod:`mcbio.model.varlen`). Choices are checked before any weight is loaded.
"""

from __future__ import annotations

import torch
from transformers.models.modernbert import modeling_modernbert as mb

from mcbio.config.loader import ConfigError
from mcbio.model.varlen import KERNELS, VarlenKernel, load_varlen_kernel, use_varlen_kernel

BACKENDS = ("sdpa", "eager", "flash_attention_2", "flex_attention")
# Built by transformers as requested; the others start from an SDPA model.
NATIVE = ("sdpa", "eager")


def check_attention_backend(attn_implementation: str, flash_attention_kernel: str = "flash_attn") -> VarlenKernel | None:
    """The varlen kernel for ``flash_attention_2`` (None otherwise); ConfigError naming the key if unusable here."""
    if attn_implementation not in BACKENDS:
        raise ConfigError(f"'model.attn_implementation'={attn_implementation!r}: choose one of {', '.join(BACKENDS)}")
    if flash_attention_kernel not in KERNELS:
        raise ConfigError(f"'model.flash_attention_kernel'={flash_attention_kernel!r}: choose one of {', '.join(KERNELS)}")
    if attn_implementation == "flash_attention_2":
        return load_varlen_kernel(flash_attention_kernel)
    if flash_attention_kernel != "flash_attn":
        raise ConfigError(f"'model.flash_attention_kernel'={flash_attention_kernel} only applies to "
                          f"model.attn_implementation=flash_attention_2, not {attn_implementation}")
    if attn_implementation == "flex_attention":
        try:
            import mcbio.model.flex  # noqa: F401  registers the backend
        except ImportError as err:
            raise ConfigError(f"'model.attn_implementation'=flex_attention needs torch.nn.attention.flex_attention "
                              f"(torch >= 2.5): {err}") from None
    return None


def load_implementation(attn_implementation: str) -> str:
    """What transformers builds the model with."""
    return attn_implementation if attn_implementation in NATIVE else "sdpa"


def use_attention_backend(model: torch.nn.Module, attn_implementation: str, flash_attention_kernel: str = "flash_attn") -> None:
    """Switch a model built with :func:`load_implementation` to ``attn_implementation``."""
    kernel = check_attention_backend(attn_implementation, flash_attention_kernel)
    if attn_implementation in NATIVE:
        return
    encoder = getattr(model, "model", model)
    if not isinstance(encoder, mb.ModernBertModel):
        raise ConfigError(f"'model.attn_implementation'={attn_implementation} is implemented for ModernBERT only; "
                          f"{model.config.model_type} models run with sdpa or eager")
    if attn_implementation == "flash_attention_2":
        assert kernel is not None
        use_varlen_kernel(model, kernel)
    else:
        model.config._attn_implementation = "flex_attention"
