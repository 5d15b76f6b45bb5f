"""Early stopping keeps (and restores) the best validation epoch; bucketed batches pad less."""

from __future__ import annotations

import torch
from torch import nn

from mcbio.evaluate.batching import Feature, collate, length_bucketed_batches, random_batches
from mcbio.evaluate.trainer import train_with_early_stopping


def test_early_stopping_picks_and_restores_the_best_validation_epoch():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    data = [{"input_ids": torch.randn(8, 4), "labels": torch.randint(0, 2, (8,))} for _ in range(3)]
    scripted = iter([0.2, 0.6, 0.4, 0.5, 0.3, 0.9])  # best is epoch 2; patience 3 stops after epoch 5
    weights_at_epoch: list[torch.Tensor] = []

    def validate(m):
        weights_at_epoch.append(m.weight.detach().clone())
        return next(scripted)

    result = train_with_early_stopping(
        model, lambda epoch: iter(data), lambda m, b: nn.functional.cross_entropy(m(b["input_ids"]), b["labels"]),
        validate, epochs=10, steps_per_epoch=3, lr=0.1, weight_decay=0.0, warmup_ratio=0.0, patience=3,
    )
    assert result.best_epoch == 2 and result.best_score == 0.6
    assert result.history == [0.2, 0.6, 0.4, 0.5, 0.3]  # never reached the 0.9 of epoch 6
    assert result.epochs_run == 5
    assert torch.equal(model.weight, weights_at_epoch[1])
    assert not torch.equal(model.weight, weights_at_epoch[-1])


def test_no_patience_runs_every_epoch():
    model = nn.Linear(2, 2)
    data = [{"input_ids": torch.randn(4, 2), "labels": torch.zeros(4, dtype=torch.long)}]
    scores = iter([0.5, 0.4, 0.3, 0.2])
    result = train_with_early_stopping(
        model, lambda e: iter(data), lambda m, b: nn.functional.cross_entropy(m(b["input_ids"]), b["labels"]),
        lambda m: next(scores), epochs=4, steps_per_epoch=1, lr=0.01, weight_decay=0.0, warmup_ratio=0.5, patience=None,
    )
    assert result.epochs_run == 4 and result.best_epoch == 1


def test_length_bucketing_covers_every_example_once_and_pads_less():
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(5, 500, (400,), generator=gen).tolist()
    feats = [Feature(input_ids=[1] * n, example=i, target=0) for i, n in enumerate(lengths)]
    bucketed = length_bucketed_batches(lengths, 8, torch.Generator().manual_seed(1), bucket_batches=10)
    plain = random_batches(len(lengths), 8, torch.Generator().manual_seed(1))
    assert sorted(i for b in bucketed for i in b) == list(range(400))

    def padded(batches):
        return sum(collate([feats[i] for i in b], pad_id=0)["input_ids"].numel() for b in batches)

    real = sum(lengths)
    assert padded(bucketed) < 1.15 * real  # close to no padding
    assert padded(plain) > 1.5 * real  # random batches of uniform lengths pad ~70 %
    # The epoch order is still random: not simply sorted by length.
    firsts = [lengths[b[0]] for b in bucketed]
    assert firsts != sorted(firsts, reverse=True)
