"""DecoupledAdamW with weight decay on everything but biases and normalisation weights."""

from __future__ import annotations

import torch
from composer.optim import DecoupledAdamW

from mcbio.config.schema import OptimizerConfig

NORM_TYPES = (torch.nn.LayerNorm, torch.nn.RMSNorm, torch.nn.GroupNorm, torch.nn.BatchNorm1d)


def weight_decay_groups(model: torch.nn.Module, weight_decay: float, exclude_bias_and_norm: bool = True) -> list[dict]:
    if not exclude_bias_and_norm:
        return [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    no_decay: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if isinstance(module, NORM_TYPES) or name == "bias":
                no_decay.add(id(param))
    decay, skip, seen = [], [], set()
    for param in model.parameters():  # parameters() deduplicates tied weights
        if id(param) in seen:
            continue
        seen.add(id(param))
        (skip if id(param) in no_decay else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": skip, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, cfg: OptimizerConfig, lr: float) -> DecoupledAdamW:
    """``lr``: the first phase's LR (the LR of every batch is then set by :func:`apply_lr`)."""
    groups = weight_decay_groups(model, cfg.weight_decay, cfg.exclude_bias_and_norm)
    return DecoupledAdamW(groups, lr=lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


def apply_lr(optimizer: torch.optim.Optimizer, lr: float, weight_decay_reference_lr: float) -> None:
    """Set the LR of every group; decoupled weight decay then scales with lr / ``weight_decay_reference_lr``.

    DecoupledAdamW multiplies decayed weights by ``1 - weight_decay * lr / group["initial_lr"]``;
    ``initial_lr`` would otherwise be whatever LR the optimizer was built with. Pinning it to the
    phase's LR makes ``train.optimizer.weight_decay`` the per-step decay at the phase's peak LR.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
        group["initial_lr"] = weight_decay_reference_lr
