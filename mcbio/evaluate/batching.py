"""Encoded features, length-bucketed batches and padding.

Long-document tasks mix 100-token and 4000-token inputs: padding a random batch to its
longest member wastes most of the compute. Bucketing shuffles, cuts the shuffled order
into pools of ``bucket_batches`` batches, sorts each pool by length and shuffles the
resulting batches, so batches hold similar lengths while the epoch order stays random.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mcbio.model.objectives import IGNORE_INDEX


@dataclass
class Feature:
    """One encoder input (a whole example, or one window of a long one)."""

    input_ids: list[int]
    example: int  # index of the example this input comes from
    # NER: label id per position (IGNORE_INDEX off first sub-tokens); classification: unused.
    token_labels: list[int] = field(default_factory=list)
    # NER: word index of each first sub-token position, -1 elsewhere.
    word_index: list[int] = field(default_factory=list)
    # Classification: class id (single-label) or multi-hot vector (multi-label).
    target: Any = None


def length_bucketed_batches(
    lengths: list[int], batch_size: int, generator: torch.Generator | None, bucket_batches: int = 50
) -> list[list[int]]:
    """Batches of indices of similar length; ``generator=None`` sorts everything (evaluation)."""
    n = len(lengths)
    if generator is None:
        order = sorted(range(n), key=lambda i: -lengths[i])
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    order = torch.randperm(n, generator=generator).tolist()
    pool = batch_size * max(1, bucket_batches)
    batches = []
    for start in range(0, n, pool):
        chunk = sorted(order[start : start + pool], key=lambda i: -lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    perm = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in perm]


def random_batches(n: int, batch_size: int, generator: torch.Generator | None) -> list[list[int]]:
    order = torch.randperm(n, generator=generator).tolist() if generator is not None else list(range(n))
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def make_batches(
    features: list[Feature], batch_size: int, generator: torch.Generator | None, bucketing: bool, bucket_batches: int = 50
) -> list[list[int]]:
    if bucketing:
        return length_bucketed_batches([len(f.input_ids) for f in features], batch_size, generator, bucket_batches)
    return random_batches(len(features), batch_size, generator)


def collate(features: list[Feature], pad_id: int, pad_to: int | None = None) -> dict[str, torch.Tensor]:
    """Pad to the batch's longest input (or to ``pad_to``); NER batches also carry ``labels``."""
    width = pad_to or max(len(f.input_ids) for f in features)
    ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    for i, f in enumerate(features):
        ids[i, : len(f.input_ids)] = torch.tensor(f.input_ids)
        mask[i, : len(f.input_ids)] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    if features[0].token_labels:
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        for i, f in enumerate(features):
            labels[i, : len(f.token_labels)] = torch.tensor(f.token_labels)
        batch["labels"] = labels
    elif features[0].target is not None:
        batch["labels"] = torch.as_tensor(np.asarray([f.target for f in features]))
    return batch
