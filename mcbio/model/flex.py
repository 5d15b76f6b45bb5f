"""FlexAttention backend for ModernBERT (``model.attn_implementation=flex_attention``).

torch's FlexAttention (``torch.nn.attention.flex_attention``) with one block mask per layer
kind (global, local) built from the segment ids, the causal flag and the local window: the
attention switch's own rule (:meth:`AttentionSwitch.permits`) is the ``mask_mod``. It gives
document-masked, sliding-window, causal or bidirectional attention on any recent CUDA
torch, without the flash_attn package. transformers 4.53 has no FlexAttention path for
ModernBERT; this registers one in ``MODERNBERT_ATTENTION_FUNCTION`` on the padded layout
(the same RoPE as SDPA), and the switch returns block masks instead of dense ones.

On CUDA, the kernel and the block-mask construction are compiled (``torch.compile``, once
per shape). Elsewhere FlexAttention runs eagerly: correct, but it materialises the scores
(tests, CPU checks).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention
from transformers.models.modernbert import modeling_modernbert as mb

from mcbio.model.attention import AttentionSwitch

# Device types on which the kernel and the mask construction are compiled (a test adds "cpu"
# to run the compiled mask construction of a CUDA run on a CPU).
COMPILE_DEVICES = {"kernel": ("cuda",), "block_mask": ("cuda",)}
_COMPILED: dict[str, Callable] = {}


def _compiled(name: str, fn: Callable) -> Callable:
    if name not in _COMPILED:
        _COMPILED[name] = torch.compile(fn, dynamic=False)
    return _COMPILED[name]


def _kernel(device: torch.device) -> Callable:
    return _compiled("flex_attention", flex_attention) if device.type in COMPILE_DEVICES["kernel"] else flex_attention


def block_masks(switch: AttentionSwitch, segments: torch.Tensor) -> tuple[BlockMask, BlockMask]:
    """(global, local) block masks for a ``(batch, seq)`` tensor of segment ids (0 = padding).

    The reach is passed as tensors, not Python constants, so the compiled mask construction
    is one graph per batch shape, whatever the mode and the window.
    """
    batch, seq_len = segments.shape
    compiled = segments.device.type in COMPILE_DEVICES["block_mask"]
    build = _compiled("create_block_mask", create_block_mask) if compiled else create_block_mask

    # The rule is looked up on the class: capturing the switch object would make every model's
    # switch a new guard, and a recompilation.
    permits = AttentionSwitch.permits

    def rule(bounds: torch.Tensor):
        def mask_mod(b, h, q_idx, kv_idx):
            return permits(segments[b, q_idx], segments[b, kv_idx], q_idx, kv_idx, bounds[0], bounds[1])
        return mask_mod

    masks = []
    for local in (False, True):
        back, ahead = switch.reach(local)
        # Unlimited = the row length: no two positions of a row are farther apart.
        bounds = torch.tensor([seq_len if back is None else back, seq_len if ahead is None else ahead], device=segments.device)
        masks.append(build(rule(bounds), batch, None, seq_len, seq_len, device=segments.device))
    return masks[0], masks[1]


def flex_attention_forward(module, qkv, attention_mask, sliding_window_mask, position_ids, local_attention, bs, dim,
                           **_kwargs):
    """Same contract as transformers' ``sdpa_attention_forward``, with BlockMasks for the masks."""
    if not isinstance(attention_mask, BlockMask):
        raise RuntimeError("flex_attention needs the block masks built by mcbio's AttentionSwitch "
                           "(install one on the model: mcbio.model.attention.AttentionSwitch)")
    if module.training and module.attention_dropout > 0.0:
        raise ValueError("flex_attention has no attention dropout; the model's attention_dropout must be 0")
    # qkv: (batch, seq, 3, heads, head_dim)
    cos, sin = module.rotary_emb(qkv, position_ids=position_ids)
    query, key, value = qkv.transpose(3, 1).unbind(dim=2)  # (batch, heads, seq, head_dim) each
    query, key = mb.apply_rotary_pos_emb(query, key, cos, sin)
    mask = attention_mask if local_attention == (-1, -1) else sliding_window_mask
    out = _kernel(query.device)(query, key, value, block_mask=mask)
    return (out.transpose(1, 2).contiguous().view(bs, -1, dim),)


mb.MODERNBERT_ATTENTION_FUNCTION["flex_attention"] = flex_attention_forward
