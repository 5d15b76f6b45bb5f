"""Global batch (in sequences) -> per-device batch, micro-batch and gradient accumulation.

Pure arithmetic (no torch, no Composer): config checks and dry runs use it, and so does the
trainer (mcbio.train.pretrain), so both split the batch the same way.
"""

from __future__ import annotations

from dataclasses import dataclass


class BatchPlanError(ValueError):
    """The global batch cannot be split evenly; the message names the keys to change."""


@dataclass(frozen=True)
class BatchPlan:
    global_batch_size: int
    world_size: int
    per_device: int
    microbatch: int
    grad_accum: int

    def describe(self, seq_len: int) -> str:
        return (
            f"global batch {self.global_batch_size} sequences x {seq_len} tokens = "
            f"{self.global_batch_size * seq_len:,} tokens/step = {self.world_size} ranks x "
            f"{self.per_device} sequences/rank = {self.world_size} x {self.microbatch} (micro-batch) x "
            f"{self.grad_accum} (gradient accumulation)"
        )


def plan_batch(global_batch_size: int, device_microbatch_size: int, world_size: int) -> BatchPlan:
    """``world_size`` = GPUs per node x nodes (one rank per GPU); errors if anything is fractional."""
    if global_batch_size <= 0 or device_microbatch_size <= 0 or world_size <= 0:
        raise BatchPlanError("'train.global_batch_size', 'train.device_microbatch_size' and the rank count must be positive")
    if global_batch_size % world_size:
        raise BatchPlanError(
            f"'train.global_batch_size'={global_batch_size} is not divisible by {world_size} ranks "
            "(resources.nodes x resources.gpus_per_node)"
        )
    per_device = global_batch_size // world_size
    microbatch = min(device_microbatch_size, per_device)
    if per_device % microbatch:
        raise BatchPlanError(
            f"{per_device} sequences per rank ('train.global_batch_size'={global_batch_size} / {world_size} ranks) "
            f"is not a multiple of 'train.device_microbatch_size'={device_microbatch_size}"
        )
    return BatchPlan(global_batch_size, world_size, per_device, microbatch, per_device // microbatch)
