"""NER fine-tuning: a linear layer on every position, labels on first sub-tokens, seqeval F1."""

from __future__ import annotations

import logging

import torch
from torch import nn

from mcbio.config.schema import FinetuneConfig
from mcbio.evaluate.batching import Feature
from mcbio.evaluate.degenerate import ner_prediction_counts
from mcbio.evaluate.encoding import encode_ner, input_length
from mcbio.evaluate.heads import TokenClassifier
from mcbio.evaluate.metrics import ner_scores
from mcbio.evaluate.trainer import epoch_batches, predict_logits, train_with_early_stopping
from mcbio.model.objectives import IGNORE_INDEX

log = logging.getLogger(__name__)


def decode_tags(features: list[Feature], logits: list[torch.Tensor], num_words: list[int], id_to_label: list[str]) -> list[list[str]]:
    """Word tags per example; a word seen in several windows takes the sum of its logits.

    Words cut off by truncation are predicted "O" (they still count as misses).
    """
    scores: list[dict[int, torch.Tensor]] = [{} for _ in num_words]
    for feat, row in zip(features, logits):
        for pos, wid in enumerate(feat.word_index):
            if wid >= 0:
                acc = scores[feat.example]
                acc[wid] = acc[wid] + row[pos] if wid in acc else row[pos].clone()
    out = []
    for n, acc in zip(num_words, scores):
        tags = ["O"] * n
        for wid, vec in acc.items():
            tags[wid] = id_to_label[int(vec.argmax())]
        out.append(tags)
    return out


def finetune_ner(model_path: str, splits: dict, seed: int, cfg: FinetuneConfig, device: str = "cpu",
                 max_length: int | None = None, init: str = "pretrained") -> dict:
    """Train on ``splits['train']``, keep the epoch with the best dev strict F1, score test with it."""
    from transformers import AutoTokenizer, set_seed

    # The launch checks these; a direct call (a notebook, a test) gets the same error naming the key.
    cfg.check()
    set_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
    try:
        tokenizer(["mot"], is_split_into_words=True)
    except ValueError:
        # Byte-level BPE tokenizers (RoBERTa-style) only take pre-split words with a prefix space.
        tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True, add_prefix_space=True)
    length = max_length or input_length(cfg, model_path, tokenizer)
    labels = sorted({t for _, tags in splits["train"] for t in tags} | {"O"})
    label_to_id = {label: i for i, label in enumerate(labels)}
    unknown = {t for split in ("dev", "test") for _, tags in splits[split] for t in tags} - set(labels)
    if unknown:
        # Kept in the gold standard (they count as misses) but never predicted.
        log.warning("tags in dev/test but not in train (never predicted): %s", sorted(unknown))
    enc = {name: encode_ner(tokenizer, rows, label_to_id, length, cfg.long_inputs, cfg.window_stride)
           for name, rows in splits.items()}
    pad_id = tokenizer.pad_token_id
    model = TokenClassifier(model_path, len(labels), cfg.dropout, init=init, seed=seed).to(device)
    ce = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)

    def loss_fn(m, batch):
        logits = m(batch["input_ids"], batch["attention_mask"])
        return ce(logits.reshape(-1, len(labels)).float(), batch["labels"].reshape(-1))

    def predict(m, name):
        logits = predict_logits(m, enc[name], cfg.eval_batch_size, pad_id, device, cfg.precision)
        return decode_tags(enc[name], logits, [len(w) for w, _ in splits[name]], labels)

    gold = {name: [t for _, t in splits[name]] for name in ("dev", "test")}
    steps = -(-len(enc["train"]) // cfg.batch_size)
    result = train_with_early_stopping(
        model, epoch_batches(enc["train"], cfg.batch_size, seed, cfg.length_bucketing, pad_id, cfg.bucket_batches),
        loss_fn, lambda m: ner_scores(gold["dev"], predict(m, "dev"))["strict_f1"],
        epochs=cfg.epochs, steps_per_epoch=steps, lr=cfg.lr, weight_decay=cfg.weight_decay,
        warmup_ratio=cfg.warmup_ratio, patience=cfg.early_stopping_patience, device=device,
        precision=cfg.precision, desc="ner",
    )
    test_pred = predict(model, "test")
    scores = ner_scores(gold["test"], test_pred)
    return {"scores": scores, "dev_score": result.best_score, "best_epoch": result.best_epoch,
            "dev_history": result.history, "epochs_run": result.epochs_run, "train_time_s": result.train_time_s,
            "train_examples_per_s": result.train_examples_per_s, "max_length": length,
            "num_labels": len(labels), "train_inputs": len(enc["train"]),
            "test_prediction_counts": ner_prediction_counts(test_pred), "prediction_unit": "words"}
