"""Labels for the two objectives on packed batches. -100 is ignored by the loss."""

from __future__ import annotations

import torch

IGNORE_INDEX = -100


def clm_labels(input_ids: torch.Tensor, document_ids: torch.Tensor) -> torch.Tensor:
    """Next-token labels: position i predicts token i+1 of the same document.

    The last token of each document segment (and padding) gets IGNORE_INDEX, so no
    position is trained to predict across a document boundary.
    """
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    same_doc = (document_ids[:, 1:] == document_ids[:, :-1]) & (document_ids[:, :-1] != 0)
    labels[:, :-1] = torch.where(same_doc, input_ids[:, 1:], torch.full_like(input_ids[:, 1:], IGNORE_INDEX))
    return labels


def mlm_mask(
    input_ids: torch.Tensor,
    document_ids: torch.Tensor,
    special_ids: torch.Tensor,
    mask_id: int,
    vocab_size: int,
    probability: float,
    generators: list[torch.Generator],
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: ``probability`` of tokens chosen; of those 80 % [MASK], 10 % random, 10 % kept.

    Special tokens and padding are never chosen. One generator per row makes the mask a
    function of the sample alone (reproducible across resumes and data-loader workers).
    """
    rows = []
    for row_ids, row_docs, gen in zip(input_ids, document_ids, generators):
        u = torch.rand(row_ids.shape, generator=gen)
        action = torch.rand(row_ids.shape, generator=gen)
        rand_tok = torch.randint(vocab_size, row_ids.shape, generator=gen)
        rows.append((u, action, rand_tok))
    u, action, rand_tok = (torch.stack(t).to(input_ids.device) for t in zip(*rows))
    eligible = (document_ids != 0) & ~torch.isin(input_ids, special_ids.to(input_ids.device))
    chosen = (u < probability) & eligible
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    masked = input_ids.clone()
    masked[chosen & (action < 0.8)] = mask_id
    random_pos = chosen & (action >= 0.8) & (action < 0.9)
    masked[random_pos] = rand_tok[random_pos]
    return masked, labels


def sample_generators(seed: int, sample_index: torch.Tensor, phase_index: int) -> list[torch.Generator]:
    """One generator per sample, seeded from (data seed, phase, sample index)."""
    gens = []
    for idx in sample_index.tolist():
        g = torch.Generator()
        g.manual_seed((seed * 1_000_003 + phase_index * 7_919 + int(idx)) % (2**63 - 1))
        gens.append(g)
    return gens
