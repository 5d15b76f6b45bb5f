"""Fine-tuning heads: ONE linear layer on top of the encoder, as in the paper.

Which head, exactly:

* :class:`SequenceClassifier` (single- and multi-label): dropout + ``nn.Linear(hidden, labels)``
  on the final hidden state of the first token ([CLS] / ``<s>``).
* :class:`TokenClassifier` (NER): dropout + ``nn.Linear(hidden, labels)`` on every position;
  words are labelled on their first sub-token.

We do NOT use transformers' ``ModernBertForSequenceClassification`` /
``ModernBertForTokenClassification``: their head is ``ModernBertPredictionHead``
(``Linear(hidden, hidden)`` -> activation -> ``LayerNorm``) followed by dropout and the
output ``Linear``, i.e. a 2-layer MLP with a norm, and the sequence head pools with
``config.classifier_pooling`` (CLS or mean). CamemBERT's ``RobertaClassificationHead`` is
also an MLP (dense + tanh + out_proj). Using the same single linear head for every encoder
keeps the comparison about the encoders, and matches the paper's "linear layer on [CLS]".
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModel


INIT_MODES = ("pretrained", "random")


def load_encoder(model_path: str, init: str = "pretrained", seed: int | None = None) -> nn.Module:
    """The bare encoder of a local HF folder (an MLM export, CamemBERT, DrBERT, ...).

    ``init="random"``: the same architecture (the folder's ``config.json``), weights
    initialised by the model class's own ``_init_weights`` from ``seed`` instead of read
    from the checkpoint: the random-init baseline of an ablation. The checkpoint's weights
    are never read, and the global RNG state is left as it was.
    """
    if init == "pretrained":
        return AutoModel.from_pretrained(model_path, local_files_only=True)
    if init != "random":
        raise ValueError(f"init={init!r}: choose one of {', '.join(INIT_MODES)}")
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_path, local_files_only=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0 if seed is None else seed)
        return AutoModel.from_config(config)


class LinearHeadModel(nn.Module):
    """Encoder + dropout + one ``nn.Linear`` (not transformers' MLP heads); subclasses pick the positions."""

    def __init__(self, model_path: str, num_labels: int, dropout: float = 0.1, init: str = "pretrained",
                 seed: int | None = None) -> None:
        super().__init__()
        self.encoder = load_encoder(model_path, init, seed)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.encoder.config.hidden_size, num_labels)

    def positions(self, hidden: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(self.dropout(self.positions(hidden)))


class SequenceClassifier(LinearHeadModel):
    """The linear layer on the first token's ([CLS]) hidden state."""

    def positions(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden[:, 0]


class TokenClassifier(LinearHeadModel):
    """The linear layer on every position."""

    def positions(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden


def model_context(model_path: str, tokenizer) -> int:
    """Tokens the encoder accepts: 512 for CamemBERT/DrBERT, 8192 for ModernBERT models."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_path, local_files_only=True)
    limit = int(config.max_position_embeddings)
    # RoBERTa-style position ids start after the padding index: 514 positions hold 512 tokens.
    if config.model_type in ("roberta", "camembert", "xlm-roberta"):
        limit -= int(config.pad_token_id or 0) + 1
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if tok_limit and tok_limit < 1_000_000:
        limit = min(limit, int(tok_limit))
    return limit
