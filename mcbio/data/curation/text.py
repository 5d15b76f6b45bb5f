"""Small text measures shared by the curation steps."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import List, Optional

_WORD = re.compile(r"\S+")
_PIECE = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n|\n")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+(?=[«\"(\[A-ZÀ-ÖØ-Þ0-9])")


def words(text: str) -> List[str]:
    return _WORD.findall(text)


def word_count(text: str) -> int:
    return len(_WORD.findall(text))


def alpha_ratio(text: str) -> float:
    """Share of non-space characters that are letters."""
    chars = [c for c in text if not c.isspace()]
    return sum(c.isalpha() for c in chars) / len(chars) if chars else 0.0


def paragraphs(text: str) -> List[str]:
    return [p.strip() for p in _PARAGRAPH_BREAK.split(text) if p.strip()]


def sentences(text: str) -> List[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


class TokenCounter:
    """Counts tokens with a local tokenizer, or estimates them (words and punctuation marks).

    The unit is recorded with every statistic so that estimated counts are never mistaken
    for tokenizer counts.
    """

    def __init__(self, tokenizer_path: Optional[str] = None) -> None:
        self.tokenizer_path = tokenizer_path
        self._tok = None

    @property
    def unit(self) -> str:
        return f"tokens:{self.tokenizer_path}" if self.tokenizer_path else "tokens:regex_estimate"

    def __call__(self, text: str) -> int:
        if self.tokenizer_path is None:
            return len(_PIECE.findall(text))
        if self._tok is None:
            self._tok = _load_tokenizer(self.tokenizer_path)
        return len(self._tok(text, add_special_tokens=False, verbose=False)["input_ids"])

    def __getstate__(self) -> dict:
        return {"tokenizer_path": self.tokenizer_path, "_tok": None}


@lru_cache(maxsize=4)
def _load_tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def normalise_for_fidelity(text: str) -> str:
    """Lowercase, strip diacritics and punctuation, squeeze spaces."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    no_marks = "".join(c for c in decomposed if not unicodedata.combining(c))
    no_punct = "".join(c if c.isalnum() else " " for c in no_marks)
    return " ".join(no_punct.split())
