"""A GGUF model's tokenizer rebuilt as the byte-level BPE it is, with its chat template.

transformers' own GGUF conversion (4.53) turns a ``gpt2``-type GGUF vocabulary into a
sentencepiece-style Llama tokenizer: its decoder does not declare the byte-level alphabet
(``Ċ`` for a newline, ``Ġ`` for a space stay as such), it drops the digit splitting of the
``smollm`` pre-tokenizer, and it adds a BOS the model was not trained with. Grammar-constrained
decoding (vLLM's xgrammar) reads the decoder to map tokens to bytes, so with that tokenizer a JSON
grammar sees ``ĊĊ`` as two unknown characters and lets whitespace run on. Here the vocabulary,
merges, special tokens and template come from the GGUF file itself (``gguf`` reader), and the
pre-tokenizer is the one llama.cpp applies for the file's ``tokenizer.ggml.pre``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict

# llama.cpp's token types (gguf.TokenType): CONTROL tokens are special, USER_DEFINED are added tokens.
_CONTROL, _USER_DEFINED = 3, 4


def _smollm_pre_tokenizer():
    from tokenizers import pre_tokenizers

    # llama.cpp's "smollm": every digit on its own, then GPT-2's byte-level split.
    return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])


def _gpt2_pre_tokenizer():
    from tokenizers import pre_tokenizers

    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


# tokenizer.ggml.pre -> the equivalent pre-tokenizer; other values are refused, not guessed.
PRE_TOKENIZERS: Dict[str, Callable[[], Any]] = {"smollm": _smollm_pre_tokenizer, "gpt-2": _gpt2_pre_tokenizer}


def gguf_metadata(path: str | Path) -> Dict[str, Any]:
    """The ``tokenizer.*`` and ``general.*`` key-value metadata of a GGUF file (arrays as lists)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    return {key: f.contents() for key, f in reader.fields.items()
            if key.startswith(("tokenizer.", "general.")) or key.endswith(".context_length")}


def tokenizer_from_gguf(path: str | Path):
    """A ``PreTrainedTokenizerFast`` equal to the GGUF's byte-level BPE vocabulary (``tokenizer.ggml.model=gpt2``)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, processors
    from transformers import PreTrainedTokenizerFast

    meta = gguf_metadata(path)
    kind = meta.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise ValueError(f"{path}: tokenizer.ggml.model is {kind!r}; only byte-level BPE ('gpt2') vocabularies are rebuilt")
    pre = meta.get("tokenizer.ggml.pre", "gpt-2")
    if pre not in PRE_TOKENIZERS:
        raise ValueError(f"{path}: tokenizer.ggml.pre {pre!r} is not one of {', '.join(PRE_TOKENIZERS)}")
    tokens = list(meta["tokenizer.ggml.tokens"])
    types = list(meta.get("tokenizer.ggml.token_type", [1] * len(tokens)))
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    tokenizer = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges,
                                     fuse_unk=False, byte_fallback=False))
    tokenizer.pre_tokenizer = PRE_TOKENIZERS[pre]()
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_tokens([AddedToken(t, special=ty == _CONTROL, normalized=False)
                          for t, ty in zip(tokens, types) if ty in (_CONTROL, _USER_DEFINED)])

    def token(key: str):
        i = meta.get(f"tokenizer.ggml.{key}_token_id")
        return tokens[int(i)] if i is not None else None

    bos = token("bos")
    if meta.get("tokenizer.ggml.add_bos_token", False) and bos is not None:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokens.index(bos))])
    context = next((int(v) for k, v in meta.items() if k.endswith(".context_length")), None)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=bos, eos_token=token("eos"), unk_token=token("unknown"),
        pad_token=token("padding"), chat_template=meta.get("tokenizer.chat_template"),
        model_max_length=context or 8192, clean_up_tokenization_spaces=False,
        # A causal LM has no segment embeddings (the GGUF declares no token types): without this the
        # tokenizer returns token_type_ids, which generate() refuses.
        model_input_names=["input_ids", "attention_mask"])
