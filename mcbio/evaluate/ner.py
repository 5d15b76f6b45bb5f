"""NER fine-tuning: a linear layer on every position of the encoder, labels on first sub-tokens."""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

from mcbio.config.schema import FinetuneConfig
from mcbio.evaluate.metrics import ner_scores
from mcbio.model.objectives import IGNORE_INDEX

log = logging.getLogger(__name__)


class TokenClassifier(nn.Module):
    """Encoder + dropout + one ``nn.Linear`` per position (not transformers' MLP head)."""

    def __init__(self, model_path: str, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = AutoModel.from_pretrained(model_path, local_files_only=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.encoder.config.hidden_size, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(self.dropout(hidden))


@dataclass
class EncodedSentence:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX on special tokens and non-first sub-tokens
    word_index: list[int]  # word of each first sub-token position, -1 elsewhere
    num_words: int


def encode(tokenizer, sentences, label_to_id: dict[str, int], max_length: int) -> list[EncodedSentence]:
    out = []
    for words, tags in sentences:
        enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)
        labels, word_index, previous = [], [], None
        for wid in enc.word_ids():
            first = wid is not None and wid != previous
            labels.append(label_to_id[tags[wid]] if first else IGNORE_INDEX)
            word_index.append(wid if first else -1)
            previous = wid
        out.append(EncodedSentence(enc["input_ids"], labels, word_index, len(words)))
    return out


def collate(batch: list[EncodedSentence], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(b.input_ids) for b in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    for i, b in enumerate(batch):
        n = len(b.input_ids)
        ids[i, :n] = torch.tensor(b.input_ids)
        mask[i, :n] = 1
        labels[i, :n] = torch.tensor(b.labels)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def predict_tags(model: TokenClassifier, data: list[EncodedSentence], id_to_label: list[str], batch_size: int, pad_id: int) -> list[list[str]]:
    model.eval()
    preds = []
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            chunk = data[start : start + batch_size]
            batch = collate(chunk, pad_id)
            logits = model(batch["input_ids"], batch["attention_mask"])
            best = logits.argmax(-1).tolist()
            for sent, row in zip(chunk, best):
                # Words cut by truncation are predicted "O".
                tags = ["O"] * sent.num_words
                for pos, wid in enumerate(sent.word_index):
                    if wid >= 0:
                        tags[wid] = id_to_label[row[pos]]
                preds.append(tags)
    return preds


def finetune_ner(model_path: str, splits: dict, seed: int, cfg: FinetuneConfig, device: str = "cpu") -> dict:
    """Train on ``splits['train']``, keep the epoch with the best dev strict F1, score test with it."""
    torch.manual_seed(seed)
    started = time.time()
    tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
    labels = sorted({t for _, tags in splits["train"] for t in tags} | {"O"})
    label_to_id = {label: i for i, label in enumerate(labels)}
    unknown = {t for split in ("dev", "test") for _, tags in splits[split] for t in tags} - set(labels)
    # Tags seen only in dev/test stay in the gold standard (so they count as misses) but
    # cannot be predicted; encoding maps them to "O" because encoded labels are unused there.
    train_rows = splits["train"][: cfg.max_train_examples] if cfg.max_train_examples else splits["train"]
    enc = {
        "train": encode(tokenizer, train_rows, label_to_id, cfg.max_length),
        "dev": encode(tokenizer, [(w, [x if x in label_to_id else "O" for x in t]) for w, t in splits["dev"]], label_to_id, cfg.max_length),
        "test": encode(tokenizer, [(w, [x if x in label_to_id else "O" for x in t]) for w, t in splits["test"]], label_to_id, cfg.max_length),
    }
    if unknown:
        log.warning("tags in dev/test but not in train (never predicted): %s", sorted(unknown))
    model = TokenClassifier(model_path, len(labels)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = -(-len(enc["train"]) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    loss_fn = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    gen = torch.Generator().manual_seed(seed)
    pad_id = tokenizer.pad_token_id
    best = {"score": -1.0, "epoch": -1, "state": None}
    history = []
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(enc["train"]), generator=gen).tolist()
        for start in tqdm(range(0, len(order), cfg.batch_size), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, mininterval=5):
            batch = collate([enc["train"][i] for i in order[start : start + cfg.batch_size]], pad_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = model(batch["input_ids"], batch["attention_mask"])
            loss = loss_fn(logits.reshape(-1, len(labels)), batch["labels"].reshape(-1))
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        dev_pred = predict_tags(model, enc["dev"], labels, cfg.batch_size * 4, pad_id)
        dev_score = ner_scores([t for _, t in splits["dev"]], dev_pred)["strict_f1"]
        history.append(dev_score)
        if dev_score > best["score"]:
            best = {"score": dev_score, "epoch": epoch, "state": copy.deepcopy(model.state_dict())}
        elif cfg.early_stopping_patience is not None and epoch - best["epoch"] >= cfg.early_stopping_patience:
            break
    model.load_state_dict(best["state"])
    test_pred = predict_tags(model, enc["test"], labels, cfg.batch_size * 4, pad_id)
    scores = ner_scores([t for _, t in splits["test"]], test_pred)
    return {
        "scores": scores,
        "best_epoch": best["epoch"] + 1,
        "dev_history": history,
        "train_time_s": time.time() - started,
    }
