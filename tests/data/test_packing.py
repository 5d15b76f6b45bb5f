"""Packing: nothing truncated, cuts at sentence/paragraph ends when allowed, ids per segment."""

import numpy as np
import pytest

from mcbio.data.packing import BoundaryTokens, PackingStats, pack_documents

DOT, NL = 3, 4  # token ids ending a sentence / a paragraph in these synthetic documents
BOUNDS = BoundaryTokens(paragraph=frozenset({NL}), sentence=frozenset({DOT, NL}))


def _docs(seed: int = 0, n: int = 60) -> list[list[int]]:
    """Documents of 'sentences' (5-12 tokens ending in DOT), paragraphs ending in NL, some longer than a row."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n):
        doc: list[int] = []
        for _ in range(int(rng.integers(1, 12))):
            doc += list(rng.integers(10, 100, size=int(rng.integers(4, 11)))) + [DOT]
            if rng.random() < 0.3:
                doc.append(NL)
        docs.append([int(t) for t in doc])
    return docs


def _segments(packed) -> list[list[int]]:
    out = []
    for ids, docs in zip(packed.input_ids, packed.document_ids):
        for seg in range(1, int(docs.max()) + 1):
            out.append(ids[docs == seg].tolist())
    return out


@pytest.mark.parametrize("slack", [0, 12])
def test_every_token_kept_in_order(slack):
    docs = _docs()
    packed = pack_documents(docs, 48, pad_id=0, boundaries=BOUNDS, max_split_padding=slack)
    flat = [t for ids, d in zip(packed.input_ids, packed.document_ids) for t in ids[d != 0].tolist()]
    assert flat == [t for doc in docs for t in doc]
    assert max(len(d) for d in docs) > 48, "the corpus must contain documents longer than one row"


def test_strict_packing_has_padding_only_in_last_row():
    packed = pack_documents(_docs(), 48, pad_id=0, max_split_padding=0)
    assert (packed.document_ids[:-1] != 0).all()


def test_cuts_fall_at_boundaries_when_slack_allows():
    docs = _docs()
    stats = PackingStats()
    packed = pack_documents(docs, 48, pad_id=0, boundaries=BOUNDS, max_split_padding=12, stats=stats)
    # Sentences are at most 11 tokens + NL, so a boundary always lies within 12 tokens of a row end.
    assert stats.cuts_mid_sentence == 0
    assert stats.cuts_at_sentence + stats.cuts_at_paragraph + stats.documents_moved > 0
    for seg in _segments(packed):
        assert seg[-1] in (DOT, NL)  # every segment ends at a sentence or paragraph end
    # Padding per row is bounded by the slack.
    assert ((packed.document_ids[:-1] == 0).sum(axis=1) <= 12).all()
    assert stats.padding_tokens == int((packed.document_ids == 0).sum())


def test_document_ids_restart_per_row_and_segments_are_contiguous():
    packed = pack_documents([[5] * 10, [6] * 30, [7] * 50], 32, pad_id=0)
    assert packed.document_ids[0].tolist() == [1] * 10 + [2] * 22
    assert packed.document_ids[1].tolist() == [1] * 8 + [2] * 24
    assert packed.document_ids[2].tolist() == [1] * 26 + [0] * 6
    assert packed.input_ids[2, 26:].tolist() == [0] * 6


def test_boundaries_from_tokenizer(tiny_tokenizer):
    bounds = BoundaryTokens.from_tokenizer(tiny_tokenizer)
    ids = tiny_tokenizer("Le patient va bien.\n\nIl sort demain.", add_special_tokens=False)["input_ids"]
    texts = [tiny_tokenizer.convert_tokens_to_string([t]) for t in tiny_tokenizer.convert_ids_to_tokens(ids)]
    assert any(i in bounds.paragraph for i in ids), texts
    assert ids[-1] in bounds.sentence, texts
    assert not set(tiny_tokenizer.all_special_ids) & (bounds.sentence | bounds.paragraph)
