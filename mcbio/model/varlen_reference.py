"""A plain-torch reference of FlashAttention-2's varlen kernels (any device, any float dtype).

Same signatures and semantics as ``flash_attn.flash_attn_varlen_func`` and
``flash_attn.flash_attn_varlen_qkvpacked_func`` (flash-attn 2.6-2.8), so that the
FlashAttention-2 path of the model (unpadding, ``cu_seqlens``, per-segment RoPE, windows,
causal flag) runs on a CPU and in CI with this function in place of the CUDA kernel:

* inputs are unpadded: ``q`` is ``(total_q, heads, head_dim)``, ``k``/``v`` are
  ``(total_k, heads_k, head_dim)``; sequence ``s`` owns rows ``cu_seqlens[s]:cu_seqlens[s+1]``;
* ``window_size=(left, right)``: query ``i`` attends to keys ``j`` with
  ``i + sk - sq - left <= j <= i + sk - sq + right`` (FlashAttention's documented rule,
  bottom-right aligned when ``sq != sk``); ``-1`` = unlimited on that side;
* ``causal=True`` = ``right = 0`` (bottom-right aligned, as FlashAttention >= 2.1);
* a query that sees no key returns zeros (FlashAttention's convention), never NaN;
* fewer key/value heads than query heads (GQA/MQA) are repeated, as the kernel does.

It materialises one ``(heads, sq, sk)`` score matrix per sequence (float32, or float64 for
float64 inputs): exact, slow,
memory-hungry. It is selected by name only (``model.flash_attention_kernel=reference``);
a production run never falls back to it (see :mod:`mcbio.model.varlen`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def window_mask(sq: int, sk: int, causal: bool, window_size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """Boolean ``(sq, sk)``: True where query i may attend to key j (FlashAttention's rule)."""
    left, right = window_size
    if causal:
        right = 0
    i = torch.arange(sq, device=device)[:, None]
    j = torch.arange(sk, device=device)[None, :]
    rel = j - (i + sk - sq)  # key position relative to the query's bottom-right-aligned diagonal
    ok = torch.ones(sq, sk, dtype=torch.bool, device=device)
    if left >= 0:
        ok &= rel >= -left
    if right >= 0:
        ok &= rel <= right
    return ok


def flash_attn_varlen_func(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    cu_seqlens_k: torch.Tensor,
    max_seqlen_q: int,
    max_seqlen_k: int,
    dropout_p: float = 0.0,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
    softcap: float = 0.0,
    alibi_slopes: torch.Tensor | None = None,
    deterministic: bool = False,
    return_attn_probs: bool = False,
    block_table: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention over each ``cu_seqlens`` segment independently; output ``(total_q, heads, head_dim)``.

    ``deterministic`` is accepted and moot (this is deterministic); ``max_seqlen_*`` are
    checked, not needed. Features the model never uses raise instead of being ignored.
    """
    if softcap or alibi_slopes is not None or return_attn_probs or block_table is not None:
        raise NotImplementedError("reference varlen kernel: softcap, alibi_slopes, return_attn_probs and block_table are not implemented")
    if q.dim() != 3 or k.dim() != 3 or v.dim() != 3:
        raise ValueError(f"expected unpadded (total, heads, head_dim) tensors, got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    heads, heads_k = q.shape[1], k.shape[1]
    if heads % heads_k:
        raise ValueError(f"{heads} query heads are not a multiple of {heads_k} key/value heads")
    scale = q.shape[-1] ** -0.5 if softmax_scale is None else softmax_scale
    bounds_q, bounds_k = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    if len(bounds_q) != len(bounds_k) or bounds_q[-1] != q.shape[0] or bounds_k[-1] != k.shape[0]:
        raise ValueError(f"cu_seqlens do not match the inputs: q {bounds_q[-1:]} vs {q.shape[0]} rows, k {bounds_k[-1:]} vs {k.shape[0]} rows")
    lens_q = [b - a for a, b in zip(bounds_q, bounds_q[1:])]
    lens_k = [b - a for a, b in zip(bounds_k, bounds_k[1:])]
    if max(lens_q, default=0) > max_seqlen_q or max(lens_k, default=0) > max_seqlen_k:
        raise ValueError(f"a segment is longer than max_seqlen ({max(lens_q)} > {max_seqlen_q} or {max(lens_k)} > {max_seqlen_k})")
    acc = torch.promote_types(q.dtype, torch.float32)  # accumulate in fp32 at least, as the kernel does
    outs = []
    for (q0, q1), (k0, k1) in zip(zip(bounds_q, bounds_q[1:]), zip(bounds_k, bounds_k[1:])):
        qs = q[q0:q1].transpose(0, 1).to(acc)  # (heads, sq, d)
        ks = k[k0:k1].transpose(0, 1).to(acc).repeat_interleave(heads // heads_k, dim=0)
        vs = v[k0:k1].transpose(0, 1).to(acc).repeat_interleave(heads // heads_k, dim=0)
        ok = window_mask(q1 - q0, k1 - k0, causal, window_size, q.device)
        scores = (qs @ ks.transpose(-1, -2)) * scale
        # A finite fill (not -inf) keeps rows without any key NaN-free in the backward pass;
        # those rows are then zeroed, as FlashAttention returns zeros for them.
        scores = scores.masked_fill(~ok, torch.finfo(scores.dtype).min)
        probs = torch.softmax(scores, dim=-1) * ok.any(dim=-1, keepdim=True)
        if dropout_p > 0.0:
            probs = F.dropout(probs, p=dropout_p)
        outs.append((probs @ vs).transpose(0, 1).to(q.dtype))
    if not outs:
        return q.new_zeros(q.shape)
    return torch.cat(outs, dim=0)


def flash_attn_varlen_qkvpacked_func(
    qkv: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    dropout_p: float = 0.0,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
    softcap: float = 0.0,
    alibi_slopes: torch.Tensor | None = None,
    deterministic: bool = False,
    return_attn_probs: bool = False,
) -> torch.Tensor:
    """``qkv`` is ``(total, 3, heads, head_dim)``: the packed form transformers' ModernBERT calls."""
    q, k, v = qkv.unbind(dim=1)
    return flash_attn_varlen_func(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, dropout_p=dropout_p,
                                  softmax_scale=softmax_scale, causal=causal, window_size=window_size, softcap=softcap,
                                  alibi_slopes=alibi_slopes, deterministic=deterministic,
                                  return_attn_probs=return_attn_probs)
