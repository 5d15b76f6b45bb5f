"""FineWeb-2's quality filters on datatrove's filters, with the work they repeat done once.

The decisions are datatrove 0.8.0's: FineWeb quality runs unchanged; Gopher repetition and Gopher
quality keep datatrove's thresholds, rules, order and reasons, and only compute their counts
differently. Where the time went in datatrove's chain on E3C passages (cProfile, ~400 passages;
``benchmarks/curation_throughput.py`` measures both chains side by side):

- word tokenisation, ~3/4 of it. Chained, the three filters already share one tokenisation per
  document (datatrove's ``split_into_parts`` remembers the last five texts); the cost is the
  spaCy call itself: datatrove runs each text in a new ``memory_zone``, where spaCy caches
  nothing, so every word of every document is split into affixes and made a lexeme again.
  :class:`SpacyWordTokenizer` keeps spaCy's cache, skips the lexical attributes nobody reads,
  and takes the words as slices of the text instead of building spaCy ``Token`` objects.
- Gopher repetition's n-grams, most of the rest: datatrove joins a new string for every window
  of each of nine sizes and counts them in Python loops. :class:`WordWindows` counts word tuples
  in C, and rules out windows that cannot repeat with a hash of every glued window.
- Gopher quality's per-word tests, Python generators over every word: here once per distinct word.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import Iterator, List, Optional, Tuple

import numpy as np

from datatrove.pipeline.filters import FineWebQualityFilter
from datatrove.pipeline.filters import gopher_quality_filter as datatrove_quality
from datatrove.pipeline.filters import gopher_repetition_filter as datatrove_repetition
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.filters.gopher_repetition_filter import find_duplicates
from datatrove.utils.text import PUNCTUATION_SET, split_into_words
from datatrove.utils.word_tokenizers import SpaCyTokenizer, WordTokenizer, load_word_tokenizer, strip_strings

from mcbio.config.curation import FineWeb2Config

# Texts tokenised by one spaCy pipeline before a fresh one replaces it: spaCy's vocabulary and
# tokenizer cache grow with every new word, so this bounds memory on any corpus (datatrove bounds
# it with a memory zone per text, where spaCy caches nothing). A fresh pipeline loads in ~0.1 s;
# one grew by 4 MiB (20,000 words) over 1,826 E3C passages.
TEXTS_PER_PIPELINE = 10_000

# spaCy 3.8 fails an assertion when a memory zone meets the token "IS_ALPHA" that an earlier
# zone created; datatrove catches it and re-tokenises the text without that string. Every
# datatrove call is a zone, so from its second such text on the string is gone from the words.
_SPACY_BROKEN_TOKEN = "IS_ALPHA"


class SpacyWordTokenizer(SpaCyTokenizer):
    """datatrove's spaCy word tokenizer for ``language``: the same words, with spaCy's cache.

    The words of a text are the slices of the text at spaCy's token offsets, stripped and
    without whitespace tokens, exactly as datatrove returns ``token.text`` stripped.
    A text holding the token "IS_ALPHA" gets the words of the text without that string, as
    datatrove's from its second such text on (its first one keeps it; spaCy's bug, not a rule).
    """

    def __init__(self, language: str) -> None:
        super().__init__(language)
        self._texts = 0

    def __getstate__(self) -> dict:
        # The spaCy pipeline stays in this process; a worker loads its own.
        return {**self.__dict__, "_tokenizer": None, "_texts": 0}

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            # The words need only the token offsets: the lexical attributes spaCy computes in
            # Python for every new word (shape, like_num, like_url...) are never read.
            super().tokenizer.vocab.lex_attr_getters = {}
        return self._tokenizer

    def restart(self) -> None:
        """A fresh spaCy pipeline from the next text on: empty cache, the memory of the old one freed."""
        self._tokenizer, self._texts = None, 0

    def _spacy_tokenizer(self):
        if self._texts >= TEXTS_PER_PIPELINE:
            self.restart()
        self._texts += 1
        return self.tokenizer.tokenizer

    def word_tokenize(self, text: str) -> List[str]:
        from spacy.attrs import IDX, LENGTH
        from spacy.tokenizer import Tokenizer

        tokenizer = self._spacy_tokenizer()
        if type(tokenizer) is not Tokenizer:
            # A language whose spaCy tokenizer rebuilds the text (pyvi...): offsets into ``text``
            # need not be its tokens, so datatrove's own path.
            return super().word_tokenize(text)
        spans = tokenizer(text).to_array([IDX, LENGTH]).tolist()
        words = strip_strings([text[start:start + length] for start, length in spans])
        if _SPACY_BROKEN_TOKEN in text and _SPACY_BROKEN_TOKEN in words:
            return self.word_tokenize(text.replace(_SPACY_BROKEN_TOKEN, ""))
        return words


@lru_cache(maxsize=None)
def chain_word_tokenizer(language: str) -> WordTokenizer:
    """The word tokenizer the chain's filters share: :class:`SpacyWordTokenizer` where datatrove
    tokenises ``language`` with a blank spaCy pipeline (French), datatrove's own otherwise."""
    tokenizer = load_word_tokenizer(language)
    if type(tokenizer) is SpaCyTokenizer and tokenizer.config is None:
        return SpacyWordTokenizer(tokenizer.language)
    return tokenizer


# --------------------------------------------------------------------------- Gopher repetition

# Polynomial hash of strings modulo 2**64 (numpy's uint64 arithmetic wraps): any odd base is
# invertible, so the hash of text[a:b] is a difference of prefix sums. Hashes only rule windows
# out (different hashes, different strings); windows are compared as strings.
_HASH_BASE = 0x100000001B3
_HASH_BASE_INVERSE = pow(_HASH_BASE, -1, 1 << 64)


@lru_cache(maxsize=None)
def _hash_powers(size: int) -> Tuple[np.ndarray, np.ndarray]:
    """base**i and base**-i modulo 2**64, for i < size."""
    powers = []
    for base in (_HASH_BASE, _HASH_BASE_INVERSE):
        p = np.full(size, base, dtype=np.uint64)
        p[0] = 1
        powers.append(np.cumprod(p, dtype=np.uint64))
    return powers[0], powers[1]


class WordWindows:
    """The windows of consecutive words of one text that datatrove's repetition checks count."""

    def __init__(self, words: List[str]) -> None:
        self.words = words
        self.glued = "".join(words)
        self.bounds = np.zeros(len(words) + 1, dtype=np.int64)  # where word i starts in ``glued``
        np.cumsum(np.fromiter(map(len, words), dtype=np.int64, count=len(words)), out=self.bounds[1:])
        codes = np.frombuffer(self.glued.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
        self._powers, inverse = _hash_powers(1 << max(10, len(codes).bit_length()))
        self._prefix = np.zeros(len(codes) + 1, dtype=np.uint64)
        np.cumsum(codes * inverse[:len(codes)], dtype=np.uint64, out=self._prefix[1:])

    def hashes(self, n: int) -> np.ndarray:
        """The hash of every window of ``n`` glued words: equal windows, equal hashes."""
        starts, ends = self.bounds[:-n], self.bounds[n:]
        return (self._prefix[ends] - self._prefix[starts]) * self._powers[ends - 1]

    def top_chars(self, n: int) -> Optional[int]:
        """datatrove's ``find_top_duplicate(get_n_grams(words, n))``: characters of the most frequent
        window of ``n`` space-joined words (the first seen among equally frequent ones) times its
        count; None without any window."""
        if " " in self.glued:  # a word holding a space: joined windows no longer map 1:1 to word tuples
            grams = datatrove_repetition.get_n_grams(self.words, n)
            return datatrove_repetition.find_top_duplicate(grams) if grams else None
        counts = Counter(zip(*(self.words[i:] for i in range(n))))
        if not counts:
            return None
        gram, count = counts.most_common(1)[0]
        return (sum(map(len, gram)) + n - 1) * count

    def repeated_chars(self, n: int) -> int:
        """datatrove's ``find_all_duplicate(words, n)``: scanning windows of ``n`` words glued with
        nothing (so "ab"+"c" and "a"+"bc" are one window) left to right, the characters of those
        seen before, jumping ``n`` words past each.

        A window whose hash no other window has was never seen before and is never seen again, so
        only the others are visited, in datatrove's order.
        """
        hashes = self.hashes(n).tolist()
        if len(set(hashes)) == len(hashes):
            return 0
        counts = Counter(hashes)
        seen, repeated, resume = set(), 0, 0
        for i, h in enumerate(hashes):
            if counts[h] == 1 or i < resume:
                continue
            gram = self.glued[self.bounds[i]:self.bounds[i + n]]
            if gram in seen:
                repeated += len(gram)
                resume = i + n
            else:
                seen.add(gram)
        return repeated


class _FirstFailedCheck:
    """``filter``: dropped for the first of ``checks(text)`` that fails, in datatrove's order, so
    that both the decision and the reason are datatrove's; later checks are never computed."""

    def filter(self, doc) -> bool | tuple[bool, str]:
        for reason, failed in self.checks(doc.text):
            if failed:
                return False, reason
        return True


class GopherRepetitionFilter(_FirstFailedCheck, datatrove_repetition.GopherRepetitionFilter):
    """datatrove's Gopher repetition filter (thresholds, checks, order, reasons), its n-gram counts
    taken from :class:`WordWindows` (same numbers as datatrove's helpers)."""

    def checks(self, text: str) -> Iterator[Tuple[str, bool]]:
        # Each duplicate check is on only with a non-zero threshold; FineWeb-2 French leaves the
        # paragraph ones off, and then paragraphs are not even split.
        if self.dup_para_frac or self.dup_para_char_frac:
            paragraphs = self.paragraph_exp.split(text.strip())
            repeats, repeated_chars = find_duplicates(paragraphs)
            yield "dup_para_frac", bool(self.dup_para_frac) and repeats / len(paragraphs) > self.dup_para_frac
            yield "dup_para_char_frac", (bool(self.dup_para_char_frac)
                                         and repeated_chars / len(text) > self.dup_para_char_frac)
        lines = self._line_splitter.split(text)
        repeats, repeated_chars = find_duplicates(lines)
        yield "dup_line_frac", bool(self.dup_line_frac) and repeats / len(lines) > self.dup_line_frac
        yield "dup_line_char_frac", bool(self.dup_line_char_frac) and repeated_chars / len(text) > self.dup_line_char_frac

        windows = WordWindows(split_into_words(text, self.language))
        for n, threshold in self.top_n_grams:
            top = windows.top_chars(n)  # no window at all: the check is skipped, as datatrove skips it
            yield f"top_{n}_gram", top is not None and top / len(text) > threshold
        for n, threshold in self.dup_n_grams:
            yield f"duplicated_{n}_n_grams", windows.repeated_chars(n) / len(text) > threshold


# --------------------------------------------------------------------------- Gopher quality

# Every character datatrove's Gopher quality filter counts as punctuation (single characters
# all): a word is only symbols when stripping them leaves nothing.
_PUNCTUATION = "".join(sorted(PUNCTUATION_SET))


class GopherQualityFilter(_FirstFailedCheck, datatrove_quality.GopherQualityFilter):
    """datatrove's Gopher quality filter (thresholds, checks, order, reasons); its per-word tests
    (symbol word, holds a letter, stop word) run once per distinct word, weighted by its count,
    instead of once per word in Python generators."""

    def checks(self, text: str) -> Iterator[Tuple[str, bool]]:
        words = split_into_words(text, self.language)
        counts = Counter(words)
        content = {w: c for w, c in counts.items() if w.strip(_PUNCTUATION)}  # not only symbols
        n_content = sum(content.values())
        yield "gopher_short_doc", bool(self.min_doc_words) and n_content < self.min_doc_words
        yield "gopher_long_doc", bool(self.max_doc_words) and n_content > self.max_doc_words

        # numpy's mean of the lengths, as datatrove takes it: the integer sum over the count,
        # rounded once; NaN without any word (then no length check fails).
        mean_length = sum(len(w) * c for w, c in content.items()) / n_content if n_content else float("nan")
        yield "gopher_below_avg_threshold", bool(self.min_avg_word_length) and mean_length < self.min_avg_word_length
        yield "gopher_above_avg_threshold", bool(self.max_avg_word_length) and mean_length > self.max_avg_word_length

        symbol_ratio = self.max_symbol_word_ratio
        yield "gopher_too_many_hashes", bool(symbol_ratio) and text.count("#") / len(words) > symbol_ratio
        ellipses = text.count("...") + text.count("…")
        yield "gopher_too_many_ellipsis", bool(symbol_ratio) and ellipses / len(words) > symbol_ratio

        lines = text.splitlines()
        if self.max_bullet_lines_ratio:
            bullets = sum(line.lstrip().startswith(("•", "-")) for line in lines)
            yield "gopher_too_many_bullets", bullets / len(lines) > self.max_bullet_lines_ratio
        if self.max_ellipsis_lines_ratio:
            trailing = sum(line.rstrip().endswith(("...", "…")) for line in lines)
            yield "gopher_too_many_end_ellipsis", trailing / len(lines) > self.max_ellipsis_lines_ratio

        if self.max_non_alpha_words_ratio:
            with_letter = sum(c for w, c in counts.items() if w.isalpha() or any(ch.isalpha() for ch in w))
            yield "gopher_below_alpha_threshold", with_letter / len(words) < self.max_non_alpha_words_ratio
        yield "gopher_enough_stop_words", (bool(self.min_stop_words)
                                           and len(self.stop_words.intersection(counts)) < self.min_stop_words)


# --------------------------------------------------------------------------- the chain


def fineweb2_filters(cfg: FineWeb2Config, reference: bool = False) -> List[BaseFilter]:
    """Gopher repetition, FineWeb quality and Gopher quality with the config's fra_Latn values.

    The three share :func:`chain_word_tokenizer`; ``reference=True`` builds datatrove's filters
    and tokenizer exactly as shipped instead (what the tests and the benchmark compare with).
    """
    language = cfg.language if reference else chain_word_tokenizer(cfg.language)
    repetition = datatrove_repetition.GopherRepetitionFilter if reference else GopherRepetitionFilter
    quality = datatrove_quality.GopherQualityFilter if reference else GopherQualityFilter
    rep, fq, gq = cfg.repetition, cfg.fineweb_quality, cfg.gopher_quality
    return [
        repetition(
            dup_line_frac=rep.dup_line_frac, dup_para_frac=rep.dup_para_frac,
            dup_line_char_frac=rep.dup_line_char_frac, dup_para_char_frac=rep.dup_para_char_frac,
            top_n_grams=tuple(sorted(rep.top_n_grams.items())), dup_n_grams=tuple(sorted(rep.dup_n_grams.items())),
            language=language,
        ),
        FineWebQualityFilter(
            line_punct_thr=fq.line_punct_thr, short_line_thr=fq.short_line_thr, short_line_length=fq.short_line_length,
            char_duplicates_ratio=fq.char_duplicates_ratio, new_line_ratio=fq.new_line_ratio, language=language,
        ),
        quality(
            min_doc_words=gq.min_doc_words, max_doc_words=gq.max_doc_words,
            min_avg_word_length=gq.min_avg_word_length, max_avg_word_length=gq.max_avg_word_length,
            max_symbol_word_ratio=gq.max_symbol_word_ratio, max_bullet_lines_ratio=gq.max_bullet_lines_ratio,
            max_ellipsis_lines_ratio=gq.max_ellipsis_lines_ratio,
            max_non_alpha_words_ratio=gq.max_non_alpha_words_ratio,
            min_stop_words=gq.min_stop_words, stop_words=list(gq.stop_words), language=language,
        ),
    ]
