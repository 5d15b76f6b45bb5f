"""Phases as data: a token budget per phase, mapped onto Composer batches.

One Composer ``fit`` covers all phases. The phase of a batch is a function of the
batch counter alone, so a resumed run lands in the right phase with the right LR.
At a phase boundary the objective, attention mode and frozen layers switch; the
optimizer (and its state) is the same object throughout; only the LR schedule restarts.

The LR is the phase's own (``train.phases.<name>.lr``, the only LR key) and is written
into the optimizer at the start of each batch (:class:`BatchLR`) from that batch's index.
Not through a Composer scheduler: Composer steps schedulers after a batch and before the
batch counter advances, so a scheduler evaluated on the counter sets batch b's LR to
lr(b - 1) (the first warmup value twice; the last decay batch one step short of final_lr).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from composer.core import Callback, Event, State
from composer.loggers import Logger

from mcbio.config.schema import PhaseConfig
from mcbio.train.optim import apply_lr

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedPhase:
    index: int
    name: str
    config: PhaseConfig
    start_batch: int
    num_batches: int
    warmup_batches: int

    @property
    def end_batch(self) -> int:
        return self.start_batch + self.num_batches


def plan_phases(phases: dict[str, PhaseConfig], tokens_per_batch: int) -> list[PlannedPhase]:
    plan, start = [], 0
    for index, (name, phase) in enumerate(phases.items()):
        num = max(1, math.ceil(phase.tokens / tokens_per_batch))
        warmup = min(num, math.ceil(phase.warmup_tokens / tokens_per_batch)) if phase.warmup_tokens else 0
        plan.append(PlannedPhase(index, name, phase, start, num, warmup))
        start += num
    return plan


def phase_at(plan: list[PlannedPhase], batch: int) -> PlannedPhase:
    for phase in plan:
        if batch < phase.end_batch:
            return phase
    return plan[-1]


def phase_lr(phase: PlannedPhase, step: int) -> float:
    """LR at ``step`` batches into ``phase``: linear warmup, then the phase's schedule."""
    cfg = phase.config
    if step < phase.warmup_batches:
        return cfg.lr * (step + 1) / phase.warmup_batches
    decay_steps = phase.num_batches - phase.warmup_batches
    progress = min(1.0, (step - phase.warmup_batches) / max(1, decay_steps - 1)) if decay_steps > 1 else 1.0
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "one_minus_sqrt":
        return cfg.final_lr + (cfg.lr - cfg.final_lr) * (1.0 - math.sqrt(progress))
    if cfg.schedule == "linear":
        return cfg.final_lr + (cfg.lr - cfg.final_lr) * (1.0 - progress)
    raise ValueError(f"unknown schedule {cfg.schedule!r}")


class PhasedLRSchedule:
    """The LR of every batch of the run: the schedule of the batch's phase."""

    def __init__(self, plan: list[PlannedPhase]) -> None:
        self.plan = plan

    def lr_at(self, batch: int) -> float:
        phase = phase_at(self.plan, batch)
        return phase_lr(phase, batch - phase.start_batch)


class BatchLR(Callback):
    """Sets the optimizer's LR to the schedule's value for the batch about to be trained.

    At ``BATCH_START`` the timestamp is that batch's index (0-based), and nothing moves the LR
    before its optimizer step. Decoupled weight decay is scaled by lr / the phase's LR (see
    :func:`mcbio.train.optim.apply_lr`).
    """

    def __init__(self, plan: list[PlannedPhase]) -> None:
        self.schedule = PhasedLRSchedule(plan)

    def run_event(self, event: Event, state: State, logger: Logger) -> None:
        if event not in (Event.FIT_START, Event.BATCH_START):
            return
        batch = int(state.timestamp.batch)
        phase = phase_at(self.schedule.plan, batch)
        lr = self.schedule.lr_at(batch)
        for optimizer in state.optimizers:
            apply_lr(optimizer, lr, phase.config.lr)
        if event == Event.BATCH_START:
            logger.log_metrics({"train/lr": lr})


class PhaseSwitch(Callback):
    """Applies the current phase (objective, masking rate, frozen layers) before each batch."""

    def __init__(self, plan: list[PlannedPhase]) -> None:
        self.plan = plan
        self.current: int | None = None

    def run_event(self, event: Event, state: State, logger: Logger) -> None:
        if event not in (Event.FIT_START, Event.BATCH_START):
            return
        phase = phase_at(self.plan, int(state.timestamp.batch))
        if phase.index == self.current:
            return
        model = state.model.module if hasattr(state.model, "module") else state.model
        model.set_phase(phase)
        if self.current is not None:
            log.info("phase switch at batch %d: %s -> %s", int(state.timestamp.batch), self.plan[self.current].name, phase.name)
        self.current = phase.index
        logger.log_metrics({"phase/index": phase.index})
