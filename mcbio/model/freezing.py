"""Freeze encoder layers by ranges ("0-7", "11") for the mechanistic ablation."""

from __future__ import annotations

import torch


def parse_layer_ranges(specs: list[str] | tuple[str, ...], num_layers: int) -> list[int]:
    layers: set[int] = set()
    for spec in specs:
        text = str(spec).strip()
        try:
            if "-" in text:
                lo, hi = (int(x) for x in text.split("-", 1))
            else:
                lo = hi = int(text)
        except ValueError:
            raise ValueError(f"frozen_layers: cannot parse {spec!r} (use '0-7' or '11')") from None
        if not 0 <= lo <= hi < num_layers:
            raise ValueError(f"frozen_layers: {spec!r} is outside layers 0-{num_layers - 1}")
        layers.update(range(lo, hi + 1))
    return sorted(layers)


def encoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The transformer blocks: ``model.layers`` (ModernBERT) or ``encoder.layer`` (BERT/RoBERTa/CamemBERT)."""
    base = getattr(model, "base_model", model)
    if hasattr(base, "layers"):
        return base.layers
    if hasattr(base, "encoder") and hasattr(base.encoder, "layer"):
        return base.encoder.layer
    raise TypeError(f"cannot find the encoder layers of {type(model).__name__}")


def set_frozen_layers(model: torch.nn.Module, layers: list[int]) -> None:
    """``requires_grad=False`` for the listed encoder layers, True for every other parameter."""
    blocks = encoder_layers(model)
    frozen = {id(p) for i in layers for p in blocks[i].parameters()}
    for param in model.parameters():
        param.requires_grad_(id(param) not in frozen)
