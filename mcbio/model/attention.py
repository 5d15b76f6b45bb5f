"""Bidirectional / causal attention switch for transformers' ModernBERT (4.53).

The same encoder runs as an MLM encoder (bidirectional) or as a causal LM (CLM detour).
transformers builds the eager/SDPA masks in ``ModernBertModel._update_attention_mask``
from a 2D mask, and dispatches FlashAttention-2 through ``MODERNBERT_ATTENTION_FUNCTION``.
The switch replaces the first per model instance and wraps the second once, so that:

* causal mode applies to every layer, the sliding-window (local) layers included;
* packed documents never attend to each other: the 2D ``attention_mask`` carries
  document ids (0 = padding, equal positive ids = same document) instead of 0/1;
  a plain 0/1 mask is the one-document case, so tokenizer outputs still work;
* local layers keep their window. Under causal attention the window is
  ``causal_local_window``: ``half`` = the left half of the bidirectional window
  (``local_attention // 2`` tokens back, the per-side receptive field the model was
  pretrained with, as ModernBERT-derived decoders do) or ``full`` = ``local_attention``
  tokens back (the same number of keys as in bidirectional mode). Default: ``half``.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.models.modernbert import modeling_modernbert as mb

MODES = ("bidirectional", "causal")
LOCAL_WINDOWS = ("half", "full")


def _module_switch(module: torch.nn.Module) -> "AttentionSwitch | None":
    return getattr(module, "_mcbio_attention_switch", None)


def _flash_attention_forward(module, qkv, rotary_emb, cu_seqlens, max_seqlen, local_attention, bs, dim, target_dtype=torch.bfloat16, **kwargs):
    """FlashAttention-2 path: varlen (one sequence per document), causal when switched."""
    switch = _module_switch(module)
    if switch is None or switch.mode == "bidirectional":
        return _ORIGINAL_FLASH(module, qkv=qkv, rotary_emb=rotary_emb, cu_seqlens=cu_seqlens, max_seqlen=max_seqlen,
                               local_attention=local_attention, bs=bs, dim=dim, target_dtype=target_dtype, **kwargs)
    from flash_attn import flash_attn_varlen_qkvpacked_func  # GPU-only dependency

    qkv = rotary_emb(qkv, cu_seqlens=cu_seqlens, max_seqlen=max_seqlen)
    window = (-1, -1) if local_attention == (-1, -1) else (switch.causal_left_window(), 0)
    orig_dtype = qkv.dtype
    if orig_dtype not in (torch.float16, torch.bfloat16):
        qkv = qkv.to(target_dtype)
    attn = flash_attn_varlen_qkvpacked_func(
        qkv, cu_seqlens=cu_seqlens, max_seqlen=max_seqlen,
        dropout_p=module.attention_dropout if module.training else 0.0,
        deterministic=module.deterministic_flash_attn, window_size=window, causal=True,
    )
    return (attn.to(orig_dtype).view(bs, dim),)


_ORIGINAL_FLASH = mb.MODERNBERT_ATTENTION_FUNCTION["flash_attention_2"]
if getattr(_ORIGINAL_FLASH, "__name__", "") != "_flash_attention_forward":
    mb.MODERNBERT_ATTENTION_FUNCTION["flash_attention_2"] = _flash_attention_forward


class AttentionSwitch:
    """Installed on one ModernBERT model; ``set_mode`` flips every layer at once."""

    def __init__(self, model: torch.nn.Module, causal_local_window: str = "half", document_masking: bool = True) -> None:
        if causal_local_window not in LOCAL_WINDOWS:
            raise ValueError(f"causal_local_window must be one of {LOCAL_WINDOWS}, got {causal_local_window!r}")
        self.encoder: mb.ModernBertModel = model.model if hasattr(model, "model") else model
        if not isinstance(self.encoder, mb.ModernBertModel):
            raise TypeError(f"the attention switch needs a ModernBERT model, got {type(model).__name__}")
        self.config = self.encoder.config
        self.causal_local_window = causal_local_window
        self.document_masking = document_masking
        self.mode = "bidirectional"
        # Instance attribute shadows the class method: only this model is affected.
        self.encoder._update_attention_mask = self._update_attention_mask
        for module in self.encoder.modules():
            if isinstance(module, mb.ModernBertAttention):
                module._mcbio_attention_switch = self

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"attention mode must be one of {MODES}, got {mode!r}")
        self.mode = mode

    def causal_left_window(self) -> int:
        w = self.config.local_attention
        return w // 2 if self.causal_local_window == "half" else w

    def allowed(self, document_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Boolean (batch, 1, q, k) masks for global and local layers."""
        doc = document_ids.long()
        seq_len = doc.shape[-1]
        keys = doc.ne(0)[:, None, :]  # padding keys are never attended
        if self.document_masking:
            allowed = (doc[:, :, None] == doc[:, None, :]) & keys
        else:
            allowed = keys.expand(-1, seq_len, -1)
        pos = torch.arange(seq_len, device=doc.device)
        offset = pos[:, None] - pos[None, :]  # query - key
        if self.mode == "causal":
            allowed = allowed & (offset >= 0)
            window = (offset >= 0) & (offset <= self.causal_left_window())
        else:
            window = offset.abs() <= self.config.local_attention // 2
        return allowed[:, None], (allowed & window)[:, None]

    def _update_attention_mask(self, attention_mask: torch.Tensor, output_attentions: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        if output_attentions and self.config._attn_implementation == "sdpa":
            self.config._attn_implementation = "eager"  # as transformers does: only eager returns weights
        dtype = self.encoder.dtype
        global_ok, local_ok = self.allowed(attention_mask)
        neg = torch.finfo(dtype).min
        as_bias = lambda ok: torch.zeros(ok.shape, dtype=dtype, device=ok.device).masked_fill(~ok, neg)  # noqa: E731
        return as_bias(global_ok), as_bias(local_ok)


def document_position_ids(document_ids: torch.Tensor) -> torch.Tensor:
    """Positions restart at 0 at each document start (RoPE sees each document on its own)."""
    doc = document_ids.long()
    seq_len = doc.shape[-1]
    pos = torch.arange(seq_len, device=doc.device).expand_as(doc)
    starts = torch.ones_like(doc, dtype=torch.bool)
    starts[:, 1:] = doc[:, 1:] != doc[:, :-1]
    start_pos = torch.where(starts, pos, torch.zeros_like(pos))
    return pos - torch.cummax(start_pos, dim=-1).values


def encoder_inputs(input_ids: torch.Tensor, document_ids: torch.Tensor, attn_implementation: str) -> dict[str, Any]:
    """Keyword arguments for ``ModernBertForMaskedLM.forward`` on a packed batch."""
    if attn_implementation != "flash_attention_2":
        return {"input_ids": input_ids, "attention_mask": document_ids, "position_ids": document_position_ids(document_ids)}
    # FlashAttention-2: unpad to one varlen sequence per document segment.
    batch, seq_len = input_ids.shape
    flat_docs = document_ids.reshape(-1)
    indices = torch.nonzero(flat_docs != 0, as_tuple=False).flatten()
    # A new segment starts where the document id changes or a new row begins.
    row = torch.arange(batch * seq_len, device=input_ids.device) // seq_len
    kept_docs, kept_rows = flat_docs[indices], row[indices]
    new_seg = torch.ones_like(kept_docs, dtype=torch.bool)
    new_seg[1:] = (kept_docs[1:] != kept_docs[:-1]) | (kept_rows[1:] != kept_rows[:-1])
    starts = torch.nonzero(new_seg, as_tuple=False).flatten()
    cu_seqlens = torch.cat([starts, starts.new_tensor([indices.numel()])]).to(torch.int32)
    max_seqlen = int((cu_seqlens[1:] - cu_seqlens[:-1]).max().item())
    return {
        "input_ids": input_ids.reshape(-1)[indices],
        "indices": indices,
        "cu_seqlens": cu_seqlens,
        "max_seqlen": max_seqlen,
        "batch_size": batch,
        "seq_len": seq_len,
    }
