"""Single- and multi-label classification: a linear layer on [CLS].

Single-label: cross-entropy, macro-F1. Multi-label: BCE with, per label,
``pos_weight = negatives / positives`` counted on the training split, a 0.5 threshold on
the sigmoid, micro-F1. Windows of a long example are combined by mean (or max) of logits.

Scores run over the real label set: a label that occurs in dev/test but not in training
gets its own id after the trained head's outputs (single-label) or its own column
(multi-label). The head can never predict it, so each of its gold occurrences is a miss,
and macro averages include it wherever it is in the gold labels.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from mcbio.config.schema import FinetuneConfig
from mcbio.evaluate.batching import Feature
from mcbio.evaluate.degenerate import multi_label_prediction_counts, single_label_prediction_counts
from mcbio.evaluate.encoding import encode_texts, input_length
from mcbio.evaluate.heads import SequenceClassifier
from mcbio.evaluate.metrics import multi_label_decisions, multi_label_report, single_label_scores
from mcbio.evaluate.trainer import epoch_batches, predict_logits, train_with_early_stopping

log = logging.getLogger(__name__)


def multi_hot(rows: list[list[str]], label_to_id: dict[str, int]) -> np.ndarray:
    """Indicator matrix over the columns of ``label_to_id``; labels it does not hold are left out."""
    out = np.zeros((len(rows), len(label_to_id)), dtype=np.float32)
    for i, labels in enumerate(rows):
        for label in labels:
            if label in label_to_id:
                out[i, label_to_id[label]] = 1.0
    return out


def label_ids(splits: dict) -> tuple[dict[str, int], dict[str, int]]:
    """(training label -> head output, every label -> scored id).

    Labels seen only in dev/test (a warning names them) get ids after the head's outputs,
    one each, so they are scored as classes of their own that are never predicted.
    """
    labels = sorted({label for _, row in splits["train"] for label in row})
    label_to_id = {label: i for i, label in enumerate(labels)}
    unseen = sorted({label for name in ("dev", "test") for _, row in splits[name] for label in row} - set(labels))
    if unseen:
        log.warning("labels in dev/test but not in train (never predicted, scored as misses): %s", unseen)
    return label_to_id, {**label_to_id, **{label: len(labels) + i for i, label in enumerate(unseen)}}


def gold_targets(rows: list[list[str]], ids: dict[str, int], multi_label: bool) -> np.ndarray:
    """Gold labels as ids (single-label: each row's one label) or an indicator matrix (multi-label)."""
    if multi_label:
        return multi_hot(rows, ids)
    return np.array([ids[row[0]] for row in rows])


def positive_weights(targets: np.ndarray) -> torch.Tensor:
    """negatives / positives per label (a label with no positive gets weight 1)."""
    pos = targets.sum(0)
    neg = targets.shape[0] - pos
    return torch.tensor(np.where(pos > 0, neg / np.maximum(pos, 1), 1.0), dtype=torch.float32)


def aggregate(features: list[Feature], logits: list[torch.Tensor], num_examples: int, how: str = "mean") -> torch.Tensor:
    """One logit vector per example from its windows."""
    groups: list[list[torch.Tensor]] = [[] for _ in range(num_examples)]
    for feat, row in zip(features, logits):
        groups[feat.example].append(row)
    stacked = [torch.stack(g) for g in groups]
    return torch.stack([g.max(0).values if how == "max" else g.mean(0) for g in stacked])


def finetune_classifier(model_path: str, splits: dict, seed: int, cfg: FinetuneConfig, multi_label: bool,
                        device: str = "cpu", max_length: int | None = None, init: str = "pretrained") -> dict:
    from transformers import AutoTokenizer, set_seed

    # The launch checks these; a direct call (a notebook, a test) gets the same error naming the key.
    cfg.check()
    set_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
    length = max_length or input_length(cfg, model_path, tokenizer, multi_label)
    label_to_id, scored_ids = label_ids(splits)
    labels = list(label_to_id)
    if not multi_label:
        multi = [i for i, (_, row) in enumerate(splits["train"]) if len(row) != 1]
        if multi:
            raise ValueError(f"single-label task: training example {multi[0]} has labels {splits['train'][multi[0]][1]}")

    gold = {name: gold_targets([row for _, row in splits[name]], label_to_id if name == "train" else scored_ids,
                               multi_label) for name in splits}
    enc = {name: encode_texts(tokenizer, [t for t, _ in splits[name]], list(gold[name]), length,
                              cfg.long_inputs, cfg.window_stride) for name in splits}
    pad_id = tokenizer.pad_token_id
    model = SequenceClassifier(model_path, len(labels), cfg.dropout, init=init, seed=seed).to(device)
    if multi_label:
        weight = positive_weights(gold["train"]).to(device) if cfg.pos_weight else None
        criterion: nn.Module = nn.BCEWithLogitsLoss(pos_weight=weight)
    else:
        criterion = nn.CrossEntropyLoss()

    def loss_fn(m, batch):
        logits = m(batch["input_ids"], batch["attention_mask"]).float()
        return criterion(logits, batch["labels"].float() if multi_label else batch["labels"])

    last_pred: dict = {}  # split -> its latest predictions (for the degenerate-run check)

    def scores(m, name):
        logits = aggregate(enc[name], predict_logits(m, enc[name], cfg.eval_batch_size, pad_id, device, cfg.precision),
                           len(splits[name]), cfg.window_aggregation)
        if multi_label:
            probs = torch.sigmoid(logits).numpy()
            last_pred[name] = multi_label_decisions(probs, cfg.threshold)
            return multi_label_report(gold[name], probs, cfg.threshold)  # + the forced top-1 variant
        pred = last_pred[name] = logits.argmax(-1).tolist()
        return single_label_scores(gold[name].tolist(), pred, len(labels))

    primary = "micro_f1" if multi_label else "macro_f1"
    steps = -(-len(enc["train"]) // cfg.batch_size)
    result = train_with_early_stopping(
        model, epoch_batches(enc["train"], cfg.batch_size, seed, cfg.length_bucketing, pad_id, cfg.bucket_batches),
        loss_fn, lambda m: scores(m, "dev")[primary],
        epochs=cfg.epochs, steps_per_epoch=steps, lr=cfg.lr, weight_decay=cfg.weight_decay,
        warmup_ratio=cfg.warmup_ratio, patience=cfg.early_stopping_patience, device=device,
        precision=cfg.precision, desc="multi-label" if multi_label else "single-label",
    )
    test_scores = scores(model, "test")
    counts = (multi_label_prediction_counts if multi_label else single_label_prediction_counts)(last_pred["test"], labels)
    return {"scores": test_scores, "dev_score": result.best_score, "best_epoch": result.best_epoch,
            "dev_history": result.history, "epochs_run": result.epochs_run, "train_time_s": result.train_time_s,
            "train_examples_per_s": result.train_examples_per_s, "max_length": length,
            "num_labels": len(labels), "train_inputs": len(enc["train"]),
            "test_prediction_counts": counts, "prediction_unit": "examples"}
