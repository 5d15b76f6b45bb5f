"""Tokenise examples into encoder inputs: truncation (the paper) or overlapping windows.

``long_inputs="truncate"`` keeps the first ``max_length`` tokens, as the paper does for
512-token models. ``"sliding_window"`` cuts long inputs into windows of ``max_length``
tokens overlapping by ``stride`` tokens (the fast tokenizer's overflow mechanism); each
window is a training input with the example's labels, and predictions are aggregated over
the windows of an example (see :mod:`mcbio.evaluate.classify` and :mod:`mcbio.evaluate.ner`).

Input length (:func:`input_length`): by default the model's own context (its config's
position embeddings, capped by the tokenizer's ``model_max_length``: 8192 for
ModernCamemBERT, 512 for CamemBERT-like models), as in the paper's Table 3 and in the
authors' harness, which calls the tokenizer with ``truncation=True`` and no length.
``finetune.max_length`` / ``max_length_multilabel`` are explicit caps on top of it.
"""

from __future__ import annotations

from mcbio.evaluate.batching import Feature
from mcbio.model.objectives import IGNORE_INDEX


def input_length(cfg, model_path: str, tokenizer, multi_label: bool = False) -> int:
    """Tokens per input: the model's context (``cfg.max_context`` overrides it), capped by the task's cap key."""
    from mcbio.evaluate.heads import model_context

    context = cfg.max_context or model_context(model_path, tokenizer)
    cap = cfg.max_length_multilabel if multi_label else cfg.max_length
    return min(cap, context) if cap else context


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


def _subtokens_per_word(tokenizer, sentences: list[tuple[list[str], list[str]]]) -> list[list[int]]:
    """Sub-tokens of every word in the full (untruncated) encoding of each sentence."""
    full = tokenizer([words for words, _ in sentences], is_split_into_words=True, add_special_tokens=False,
                     truncation=False, verbose=False)
    counts = []
    for row, (words, _) in enumerate(sentences):
        n = [0] * len(words)
        for wid in full.word_ids(row):
            if wid is not None:
                n[wid] += 1
        counts.append(n)
    return counts


def first_subtoken_positions(word_ids: list[int | None], subtokens: list[int], seen: set[int]) -> set[int]:
    """Positions of a window that hold a word's first sub-token of the *full* encoding.

    A window cut from a longer input may open in the middle of a word: its first run of
    tokens then belongs to a word whose first sub-token lies in an earlier window. That
    run is a continuation when it is shorter than the word's sub-token count and the word
    was already met in an earlier window (``seen``, updated here).
    """
    runs: list[tuple[int, int, int]] = []  # (word, first position, length)
    for pos, wid in enumerate(word_ids):
        if wid is None:
            continue
        if runs and runs[-1][0] == wid and runs[-1][1] + runs[-1][2] == pos:
            runs[-1] = (wid, runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((wid, pos, 1))
    firsts = set()
    for k, (wid, pos, length) in enumerate(runs):
        continuation = k == 0 and length < subtokens[wid] and wid in seen
        if not continuation:
            firsts.add(pos)
    seen.update(wid for wid, _, _ in runs)
    return firsts


def encode_ner(tokenizer, sentences: list[tuple[list[str], list[str]]], label_to_id: dict[str, int],
               max_length: int, long_inputs: str = "truncate", stride: int = 256) -> list[Feature]:
    """Labels on the first sub-token of each word (of the full encoding); tags unknown to ``label_to_id`` train as "O"."""
    enc, mapping = _tokenize(tokenizer, [words for words, _ in sentences], max_length, long_inputs, stride,
                             is_split_into_words=True)
    windows = long_inputs == "sliding_window"
    subtokens = _subtokens_per_word(tokenizer, sentences) if windows else None
    seen: dict[int, set[int]] = {}
    out = []
    for row, ex in enumerate(mapping):
        tags = sentences[ex][1]
        word_ids = enc.word_ids(row)
        if subtokens is not None:
            firsts = first_subtoken_positions(word_ids, subtokens[ex], seen.setdefault(ex, set()))
        else:
            firsts = {pos for pos, wid in enumerate(word_ids)
                      if wid is not None and (pos == 0 or word_ids[pos - 1] != wid)}
        labels, word_index = [], []
        for pos, wid in enumerate(word_ids):
            first = pos in firsts
            labels.append(label_to_id.get(tags[wid], label_to_id["O"]) if first else IGNORE_INDEX)
            word_index.append(wid if first else -1)
        out.append(Feature(input_ids=list(enc["input_ids"][row]), example=ex, token_labels=labels, word_index=word_index))
    return out
