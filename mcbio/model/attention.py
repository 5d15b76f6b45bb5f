"""Bidirectional / causal attention switch for transformers' ModernBERT (4.53), every backend.

The same encoder runs as an MLM encoder (bidirectional) or as a causal LM (CLM detour).
One rule decides which key a query may see (:meth:`AttentionSwitch.permits`), and every
backend applies it:

* ``eager`` / ``sdpa``: dense ``(batch, 1, q, k)`` masks built here, in place of
  ``ModernBertModel._update_attention_mask`` (replaced per model instance);
* ``flex_attention``: the same rule as a FlexAttention block mask (:mod:`mcbio.model.flex`);
* ``flash_attention_2``: unpadded tokens, one varlen sequence per segment, the causal flag
  and FlashAttention's ``window_size`` (:mod:`mcbio.model.varlen`).

The rule:

* causal mode applies to every layer, the sliding-window (local) layers included;
* packed documents never attend to each other: the 2D ``attention_mask`` carries
  document ids (0 = padding, equal positive ids = same document) instead of 0/1;
  a plain 0/1 mask is the one-document case, so tokenizer outputs still work;
* ``document_masking=False`` means one segment per row on every backend: every real
  token of a row sees every other (within its window), and positions run across the row;
* padding tokens only see padding (no query row is ever empty, so no NaN on any backend);
  padding is at the end of a row (packing never puts it elsewhere);
* local layers keep their window. Bidirectional: ``local_attention // 2`` tokens on each
  side (transformers' rule; FlashAttention ``window_size=(w/2, w/2)``). Under causal
  attention the window is ``causal_local_window``: ``half`` = the left half of the
  bidirectional window (``local_attention // 2`` tokens back, the per-side receptive field
  the model was pretrained with, as ModernBERT-derived decoders do) or ``full`` =
  ``local_attention`` tokens back (the same number of keys as in bidirectional mode);
  FlashAttention ``window_size=(left, 0)``. Default: ``half``.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.models.modernbert import modeling_modernbert as mb

MODES = ("bidirectional", "causal")
LOCAL_WINDOWS = ("half", "full")
SWITCH_ATTR = "_mcbio_attention_switch"


def module_switch(module: torch.nn.Module) -> "AttentionSwitch | None":
    return getattr(module, SWITCH_ATTR, None)


def segment_ids(document_ids: torch.Tensor, document_masking: bool = True) -> torch.Tensor:
    """What attention separates: the document ids, or one segment per row without document masking."""
    doc = document_ids.long()
    return doc if document_masking else doc.ne(0).long()


def document_position_ids(segments: torch.Tensor) -> torch.Tensor:
    """Positions restart at 0 at each segment start (RoPE sees each document on its own).

    Pass :func:`segment_ids` output: without document masking positions run across the row.
    """
    doc = segments.long()
    seq_len = doc.shape[-1]
    pos = torch.arange(seq_len, device=doc.device).expand_as(doc)
    starts = torch.ones_like(doc, dtype=torch.bool)
    starts[:, 1:] = doc[:, 1:] != doc[:, :-1]
    start_pos = torch.where(starts, pos, torch.zeros_like(pos))
    return pos - torch.cummax(start_pos, dim=-1).values


def unpad_segments(segments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``indices`` of the real tokens in the flattened batch, ``cu_seqlens`` of each segment
    (a segment ends where the id changes or a row ends), and the longest segment."""
    batch, seq_len = segments.shape
    flat = segments.reshape(-1)
    indices = torch.nonzero(flat != 0, as_tuple=False).flatten()
    row = torch.arange(batch * seq_len, device=segments.device) // seq_len
    kept, kept_rows = flat[indices], row[indices]
    new_seg = torch.ones_like(kept, dtype=torch.bool)
    new_seg[1:] = (kept[1:] != kept[:-1]) | (kept_rows[1:] != kept_rows[:-1])
    starts = torch.nonzero(new_seg, as_tuple=False).flatten()
    cu_seqlens = torch.cat([starts, starts.new_tensor([indices.numel()])]).to(torch.int32)
    max_seqlen = int((cu_seqlens[1:] - cu_seqlens[:-1]).max().item()) if starts.numel() else 0
    return indices, cu_seqlens, max_seqlen


def encoder_inputs(input_ids: torch.Tensor, document_ids: torch.Tensor, attn_implementation: str,
                   document_masking: bool = True) -> dict[str, Any]:
    """Keyword arguments for ``ModernBertForMaskedLM.forward`` on a packed batch."""
    segments = segment_ids(document_ids, document_masking)
    if attn_implementation != "flash_attention_2":
        return {"input_ids": input_ids, "attention_mask": segments, "position_ids": document_position_ids(segments)}
    # FlashAttention-2: unpad to one varlen sequence per segment; RoPE positions restart at
    # each cu_seqlens boundary inside the kernel path.
    batch, seq_len = input_ids.shape
    indices, cu_seqlens, max_seqlen = unpad_segments(segments)
    return {
        "input_ids": input_ids.reshape(-1)[indices],
        # Unused by the unpadded path, but required: without a mask, ModernBertModel.forward
        # checks the (here 1-D) input_ids for padding with input_ids[:, [-1, 0]] and raises.
        "attention_mask": segments.ne(0),
        "indices": indices,
        "cu_seqlens": cu_seqlens,
        "max_seqlen": max_seqlen,
        "batch_size": batch,
        "seq_len": seq_len,
    }


class AttentionSwitch:
    """Installed on one ModernBERT model; ``set_mode`` flips every layer at once.

    A later switch installed on the same model replaces an earlier one.
    """

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
                setattr(module, SWITCH_ATTR, self)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"attention mode must be one of {MODES}, got {mode!r}")
        self.mode = mode

    def causal_left_window(self) -> int:
        w = self.config.local_attention
        return w // 2 if self.causal_local_window == "half" else w

    # ------------------------------------------------------------------ the rule
    def reach(self, local: bool) -> tuple[int | None, int | None]:
        """``(back, ahead)``: how many tokens before and after itself a query sees (None = unlimited)."""
        if self.mode == "causal":
            return (self.causal_left_window() if local else None), 0
        half = self.config.local_attention // 2
        return (half, half) if local else (None, None)

    @staticmethod
    def permits(seg_q: torch.Tensor, seg_k: torch.Tensor, q: torch.Tensor, k: torch.Tensor, back, ahead) -> torch.Tensor:
        """May query position ``q`` (segment ``seg_q``) see key ``k`` (segment ``seg_k``)?

        Same segment, at most ``back`` tokens before and ``ahead`` after (None = unlimited;
        ints or 0-d tensors). Elementwise on broadcastable tensors: the dense masks and
        FlexAttention's ``mask_mod`` evaluate this one function.
        """
        ok = seg_q == seg_k
        if back is not None:
            ok = ok & (q - k <= back)
        if ahead is not None:
            ok = ok & (k - q <= ahead)
        return ok

    def flash_window(self, local_attention: tuple[int, int]) -> tuple[bool, tuple[int, int]]:
        """``(causal, window_size)`` for FlashAttention's varlen kernel (query i sees keys
        [i - left, i + right]) in a layer whose transformers window is ``local_attention``
        ((-1, -1) global, (w/2, w/2) local): the same reach as :meth:`permits`."""
        causal = self.mode == "causal"
        if local_attention == (-1, -1):
            return causal, (-1, -1)  # the causal flag alone sets right = 0
        back, ahead = self.reach(local=True)
        return causal, (back, ahead)

    def allowed(self, document_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Boolean (batch, 1, q, k) masks for global and local layers."""
        seg = segment_ids(document_ids, self.document_masking)
        pos = torch.arange(seg.shape[-1], device=seg.device)
        args = (seg[:, :, None], seg[:, None, :], pos[:, None], pos[None, :])
        return self.permits(*args, *self.reach(False))[:, None], self.permits(*args, *self.reach(True))[:, None]

    def _update_attention_mask(self, attention_mask: torch.Tensor, output_attentions: bool = False) -> tuple[Any, Any]:
        impl = self.config._attn_implementation
        if output_attentions and impl == "sdpa":
            self.config._attn_implementation = impl = "eager"  # as transformers does: only eager returns weights
        if impl == "flex_attention":
            from mcbio.model.flex import block_masks

            return block_masks(self, segment_ids(attention_mask, self.document_masking))
        global_ok, local_ok = self.allowed(attention_mask)
        if impl == "sdpa":
            return global_ok, local_ok  # SDPA takes boolean masks (True = attend): 1 byte per pair
        dtype = self.encoder.dtype
        neg = torch.finfo(dtype).min
        as_bias = lambda ok: torch.zeros(ok.shape, dtype=dtype, device=ok.device).masked_fill(~ok, neg)  # noqa: E731
        return as_bias(global_ok), as_bias(local_ok)
