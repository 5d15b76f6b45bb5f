"""Tokenise examples into encoder inputs: truncation (the paper) or overlapping windows.

``long_inputs="truncate"`` keeps the first ``max_length`` tokens, as the paper does for
512-token models. ``"sliding_window"`` cuts long inputs into windows of ``max_length``
tokens overlapping by ``stride`` tokens (the fast tokenizer's overflow mechanism); each
window is a training input with the example's labels, and predictions are aggregated over
the windows of an example (see :mod:`mcbio.evaluate.classify` and :mod:`mcbio.evaluate.ner`).
"""

from __future__ import annotations

from mcbio.evaluate.batching import Feature
from mcbio.model.objectives import IGNORE_INDEX


def _tokenize(tokenizer, inputs, max_length: int, long_inputs: str, stride: int, **kw):
    if long_inputs not in ("truncate", "sliding_window"):
        raise ValueError(f"long_inputs={long_inputs!r}: choose truncate or sliding_window")
    windows = long_inputs == "sliding_window"
    if windows and stride >= max_length - 2:
        raise ValueError(f"window_stride ({stride}) must be smaller than the window ({max_length} tokens)")
    enc = tokenizer(inputs, truncation=True, max_length=max_length, return_overflowing_tokens=windows,
                    stride=stride if windows else 0, **kw)
    mapping = enc["overflow_to_sample_mapping"] if windows else list(range(len(enc["input_ids"])))
    return enc, mapping


def encode_texts(tokenizer, texts: list[str], targets: list, max_length: int, long_inputs: str = "truncate",
                 stride: int = 256) -> list[Feature]:
    enc, mapping = _tokenize(tokenizer, texts, max_length, long_inputs, stride)
    return [Feature(input_ids=list(ids), example=ex, target=targets[ex]) for ids, ex in zip(enc["input_ids"], mapping)]


def encode_ner(tokenizer, sentences: list[tuple[list[str], list[str]]], label_to_id: dict[str, int],
               max_length: int, long_inputs: str = "truncate", stride: int = 256) -> list[Feature]:
    """Labels on the first sub-token of each word; tags unknown to ``label_to_id`` train as "O"."""
    enc, mapping = _tokenize(tokenizer, [words for words, _ in sentences], max_length, long_inputs, stride,
                             is_split_into_words=True)
    out = []
    for row, ex in enumerate(mapping):
        tags = sentences[ex][1]
        labels, word_index, previous = [], [], None
        for wid in enc.word_ids(row):
            first = wid is not None and wid != previous
            labels.append(label_to_id.get(tags[wid], label_to_id["O"]) if first else IGNORE_INDEX)
            word_index.append(wid if first else -1)
            previous = wid
        out.append(Feature(input_ids=list(enc["input_ids"][row]), example=ex, token_labels=labels, word_index=word_index))
    return out
