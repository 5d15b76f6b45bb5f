"""The FlashAttention-2 path of ModernBERT: unpadded tokens, one varlen sequence per segment.

transformers' ModernBERT runs FlashAttention-2 on unpadded tokens: ``encoder_inputs`` gives
flat ``input_ids`` with ``indices`` / ``cu_seqlens``, and each attention layer calls
``MODERNBERT_ATTENTION_FUNCTION["flash_attention_2"]`` with ``(total, 3, heads, head_dim)``
``qkv``. For the models prepared here (:func:`use_varlen_kernel`), that entry is
:func:`varlen_attention_forward`, which

* applies RoPE per segment (the layer's unpadded rotary module restarts at each
  ``cu_seqlens`` boundary),
* takes the causal flag and ``window_size`` from the attention switch's mode,
* calls the kernel chosen by ``model.flash_attention_kernel``: ``flash_attn`` (the CUDA
  package, with transformers' triton rotary) or ``reference`` (plain torch, any device:
  :mod:`mcbio.model.varlen_reference` and :class:`UnpaddedRotaryEmbedding`).

Everything but the kernel and the rotary implementation is the same code on CPU and GPU,
so the CPU tests run the path a GPU job runs. The reference kernel is used only when asked
for by name: without ``flash_attn``, ``flash_attention_2`` is a configuration error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from transformers.models.modernbert import modeling_modernbert as mb

from mcbio.config.loader import ConfigError
from mcbio.model import varlen_reference
from mcbio.model.attention import module_switch

KERNELS = ("flash_attn", "reference")
KERNEL_ATTR = "_mcbio_varlen_kernel"


@dataclass(frozen=True)
class VarlenKernel:
    name: str
    # flash_attn_varlen_qkvpacked_func's signature.
    qkvpacked: Callable[..., torch.Tensor]
    # The CUDA kernel takes only fp16/bf16; fp32 inputs are cast to bf16 around it, as transformers does.
    half_only: bool
    # Builds a layer's unpadded rotary module from (head_dim, rope base).
    rotary: Callable[[int, float], torch.nn.Module]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def segment_positions(cu_seqlens: torch.Tensor, total: int) -> torch.Tensor:
    """Position of each unpadded token inside its segment (0 at each ``cu_seqlens`` start)."""
    starts = cu_seqlens[:-1].long()
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    # output_size avoids a device->host sync on GPU.
    first = torch.repeat_interleave(starts, lengths, output_size=total)
    return torch.arange(total, device=cu_seqlens.device) - first


class UnpaddedRotaryEmbedding(torch.nn.Module):
    """Plain-torch stand-in for transformers' ``ModernBertUnpaddedRotaryEmbedding`` (flash_attn's
    triton rotary): same call, same frequencies as the padded ``ModernBertRotaryEmbedding``
    (non-interleaved halves, positions in float32), not in place (autograd-safe)."""

    def __init__(self, dim: int, base: float) -> None:
        super().__init__()
        self.dim, self.base = dim, base
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # not a weight: never exported

    def forward(self, qkv: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int | None = None) -> torch.Tensor:
        pos = segment_positions(cu_seqlens, qkv.shape[0])
        with torch.autocast(device_type=qkv.device.type, enabled=False):
            freqs = pos.float()[:, None] * self.inv_freq.float()[None, :]
            emb = torch.cat((freqs, freqs), dim=-1)
            cos, sin = emb.cos().to(qkv.dtype)[:, None, :], emb.sin().to(qkv.dtype)[:, None, :]
        q, k, v = qkv.unbind(dim=1)  # (total, heads, head_dim) each
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        return torch.stack((q, k, v), dim=1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, base={self.base}, plain torch"


def load_varlen_kernel(name: str) -> VarlenKernel:
    """The kernel behind ``attn_implementation=flash_attention_2``; errors name the keys."""
    if name == "reference":
        return VarlenKernel("reference", varlen_reference.flash_attn_varlen_qkvpacked_func, False, UnpaddedRotaryEmbedding)
    if name != "flash_attn":
        raise ConfigError(f"'model.flash_attention_kernel'={name!r}: choose one of {', '.join(KERNELS)}")
    try:
        from flash_attn import flash_attn_varlen_qkvpacked_func
    except Exception as err:  # ImportError, or OSError/undefined symbols from a build against another torch
        raise ConfigError(
            "'model.attn_implementation'=flash_attention_2 needs the flash_attn package, which cannot be "
            f"imported here ({type(err).__name__}: {err}). Install the gpu extra on a CUDA machine "
            "(pip install -e '.[gpu]'), or choose model.attn_implementation=sdpa or flex_attention; "
            "model.flash_attention_kernel=reference runs this path with a slow plain-torch kernel (tests, CPU checks)."
        ) from None
    rotary_cls = mb.ModernBertUnpaddedRotaryEmbedding
    if not issubclass(rotary_cls, torch.nn.Module):  # transformers found FA2 unusable when it was imported
        raise ConfigError(
            "'model.attn_implementation'=flash_attention_2: flash_attn imports, but transformers did not enable "
            "its FlashAttention-2 support (is_flash_attn_2_available() is False: no CUDA device, or an unsupported "
            "flash_attn version)"
        )
    return VarlenKernel("flash_attn", flash_attn_varlen_qkvpacked_func, True,
                        lambda dim, base: rotary_cls(dim=dim, base=base))


def rope_base(config, module: torch.nn.Module) -> float:
    """The layer's RoPE theta, as ``ModernBertAttention.__init__`` picks it."""
    if module.local_attention != (-1, -1) and config.local_rope_theta is not None:
        return config.local_rope_theta
    return config.global_rope_theta


def use_varlen_kernel(model: torch.nn.Module, kernel: VarlenKernel) -> None:
    """Switch a ModernBERT built with SDPA/eager to the FlashAttention-2 path with ``kernel``.

    Only the rotary modules change (they hold no weights), so a model's state dict, its
    export and its initialisation are the same as with SDPA.
    """
    for module in model.modules():
        if isinstance(module, mb.ModernBertAttention):
            device = module.Wqkv.weight.device
            module.rotary_emb = kernel.rotary(module.head_dim, rope_base(module.config, module)).to(device)
            setattr(module, KERNEL_ATTR, kernel)
    model.config._attn_implementation = "flash_attention_2"


def varlen_attention_forward(module, qkv, rotary_emb, cu_seqlens, max_seqlen, local_attention, bs, dim,
                             target_dtype=torch.bfloat16, **kwargs):
    """``MODERNBERT_ATTENTION_FUNCTION["flash_attention_2"]`` for modules prepared by :func:`use_varlen_kernel`."""
    kernel: VarlenKernel | None = getattr(module, KERNEL_ATTR, None)
    if kernel is None:  # a ModernBERT that transformers itself built with FlashAttention-2
        return _TRANSFORMERS_FLASH(module, qkv=qkv, rotary_emb=rotary_emb, cu_seqlens=cu_seqlens, max_seqlen=max_seqlen,
                                   local_attention=local_attention, bs=bs, dim=dim, target_dtype=target_dtype, **kwargs)
    switch = module_switch(module)
    causal, window = switch.flash_window(local_attention) if switch is not None else (False, local_attention)
    qkv = rotary_emb(qkv, cu_seqlens=cu_seqlens, max_seqlen=max_seqlen)
    orig_dtype = qkv.dtype
    if kernel.half_only and orig_dtype not in (torch.float16, torch.bfloat16):
        qkv = qkv.to(target_dtype)
    attn = kernel.qkvpacked(
        qkv, cu_seqlens=cu_seqlens, max_seqlen=max_seqlen,
        dropout_p=module.attention_dropout if module.training else 0.0,
        causal=causal, window_size=window, deterministic=module.deterministic_flash_attn,
    )
    return (attn.to(orig_dtype).reshape(bs, dim),)


_TRANSFORMERS_FLASH = mb.MODERNBERT_ATTENTION_FUNCTION["flash_attention_2"]
if getattr(_TRANSFORMERS_FLASH, "__name__", "") == "varlen_attention_forward":  # module reloaded
    _TRANSFORMERS_FLASH = getattr(_TRANSFORMERS_FLASH, "_transformers_original")
varlen_attention_forward._transformers_original = _TRANSFORMERS_FLASH  # type: ignore[attr-defined]
mb.MODERNBERT_ATTENTION_FUNCTION["flash_attention_2"] = varlen_attention_forward
