"""The fine-tuning loop shared by every task type: AdamW, linear warmup/decay, early stopping.

After each epoch the model is scored on the validation split; the weights of the best
epoch are kept (in CPU memory) and restored at the end, so the test split is always scored
with the best validation epoch. Training stops once ``patience`` epochs pass without
improvement.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from mcbio.evaluate.batching import Feature, collate, make_batches


@dataclass
class TrainResult:
    best_epoch: int  # 1-based
    best_score: float
    history: list[float] = field(default_factory=list)  # validation score per epoch run
    epochs_run: int = 0
    train_time_s: float = 0.0
    train_examples_per_s: float = 0.0


def autocast(device: str, precision: str):
    if precision == "bf16" or (precision == "auto" and device.startswith("cuda")):
        return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_with_early_stopping(
    model: nn.Module,
    epoch_batches: Callable[[int], list[dict[str, torch.Tensor]]] | Callable[[int], Iterable],
    loss_fn: Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor],
    validate: Callable[[nn.Module], float],
    *,
    epochs: int,
    steps_per_epoch: int,
    lr: float,
    weight_decay: float,
    warmup_ratio: float,
    patience: int | None,
    device: str = "cpu",
    precision: str = "auto",
    desc: str = "fine-tune",
) -> TrainResult:
    """``epoch_batches(epoch)`` yields the epoch's batches; ``validate(model)`` returns the score to maximise."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    total = max(1, steps_per_epoch * epochs)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * total), total)
    best_score, best_epoch, best_state = float("-inf"), -1, None
    history: list[float] = []
    train_time, seen = 0.0, 0
    for epoch in range(epochs):
        model.train()
        started = time.perf_counter()
        for batch in tqdm(epoch_batches(epoch), total=steps_per_epoch, desc=f"{desc} epoch {epoch + 1}/{epochs}",
                          leave=False, mininterval=5):
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast(device, precision):
                loss = loss_fn(model, batch)
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            seen += batch["input_ids"].shape[0]
        train_time += time.perf_counter() - started
        model.eval()
        with torch.no_grad(), autocast(device, precision):
            score = float(validate(model))
        history.append(score)
        if score > best_score:
            best_score, best_epoch = score, epoch
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        elif patience is not None and epoch - best_epoch >= patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return TrainResult(best_epoch=best_epoch + 1, best_score=best_score, history=history, epochs_run=len(history),
                       train_time_s=train_time, train_examples_per_s=seen / train_time if train_time else 0.0)




def epoch_batches(features: list[Feature], batch_size: int, seed: int, bucketing: bool, pad_id: int,
                  bucket_batches: int = 50) -> Callable[[int], Iterable[dict[str, torch.Tensor]]]:
    """Training batches of epoch ``e``: a fresh order per epoch, reproducible from ``seed``."""

    def batches(epoch: int):
        gen = torch.Generator().manual_seed(seed * 1000 + epoch)
        for idx in make_batches(features, batch_size, gen, bucketing, bucket_batches):
            yield collate([features[i] for i in idx], pad_id)

    return batches


def predict_logits(model: nn.Module, features: list[Feature], batch_size: int, pad_id: int, device: str,
                   precision: str = "auto") -> list[torch.Tensor]:
    """Logits of every feature (float32, CPU), in the order of ``features``; batches sorted by length."""
    out: list[torch.Tensor | None] = [None] * len(features)
    model.eval()
    with torch.no_grad(), autocast(device, precision):
        for idx in make_batches(features, batch_size, None, bucketing=True):
            batch = collate([features[i] for i in idx], pad_id)
            logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device)).float().cpu()
            for row, i in enumerate(idx):
                out[i] = logits[row, : len(features[i].input_ids)] if logits.dim() == 3 else logits[row]
    return out  # type: ignore[return-value]
