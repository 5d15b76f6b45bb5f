"""CLM labels at document boundaries; MLM masking rate, 80/10/10 split, specials never masked."""

import torch

from mcbio.model.objectives import IGNORE_INDEX, clm_labels, mlm_mask, sample_generators

I = IGNORE_INDEX


def test_clm_labels_shift_inside_documents_only():
    ids = torch.tensor([[10, 11, 12, 20, 21, 30, 0, 0]])
    docs = torch.tensor([[1, 1, 1, 2, 2, 3, 0, 0]])
    # Last token of each document (12, 21, 30) predicts nothing; padding predicts nothing.
    assert clm_labels(ids, docs).tolist() == [[11, 12, I, 21, I, I, I, I]]


def test_clm_labels_row_end_is_ignored():
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    docs = torch.ones_like(ids)
    assert clm_labels(ids, docs).tolist() == [[2, 3, I], [5, 6, I]]


def _mask(rate, n_rows=64, seq=512, seed=0):
    g = torch.Generator().manual_seed(123)
    ids = torch.randint(10, 1000, (n_rows, seq), generator=g)
    ids[:, 0], ids[:, 100], ids[:, 101] = 2, 3, 2  # [CLS]/[SEP] specials inside the rows
    docs = torch.ones_like(ids)
    docs[:, -50:] = 0  # padding
    ids[:, -50:] = 1
    special = torch.tensor([1, 2, 3, 4])
    gens = sample_generators(seed, torch.arange(n_rows), phase_index=1)
    masked, labels = mlm_mask(ids, docs, special, mask_id=4, vocab_size=1000, probability=rate, generators=gens)
    return ids, docs, special, masked, labels


def test_mlm_rate_and_80_10_10():
    for rate in (0.15, 0.30):
        ids, docs, special, masked, labels = _mask(rate)
        eligible = (docs != 0) & ~torch.isin(ids, special)
        chosen = labels != I
        n = int(eligible.sum())
        # Binomial(n, rate): 5 standard deviations.
        tol = 5 * (rate * (1 - rate) / n) ** 0.5
        assert abs(chosen.sum().item() / n - rate) < tol
        assert not (chosen & ~eligible).any()  # never specials, never padding
        assert torch.equal(labels[chosen], ids[chosen])
        k = int(chosen.sum())
        as_mask = (masked[chosen] == 4).float().mean().item()
        kept = (masked[chosen] == ids[chosen]).float().mean().item()
        assert abs(as_mask - 0.8) < 5 * (0.16 / k) ** 0.5
        # Random replacements may hit the original token (1/1000), counted as kept.
        assert abs(kept - 0.1) < 5 * (0.09 / k) ** 0.5 + 0.001
        assert torch.equal(masked[~chosen], ids[~chosen])


def test_mlm_mask_is_a_function_of_the_sample_index():
    a = _mask(0.15, seed=42)
    b = _mask(0.15, seed=42)
    assert torch.equal(a[3], b[3]) and torch.equal(a[4], b[4])
    c = _mask(0.15, seed=43)
    assert not torch.equal(a[4], c[4])
    # The same sample gets the same mask whatever batch it lands in.
    g_one = sample_generators(42, torch.tensor([7]), 1)
    g_batch = sample_generators(42, torch.tensor([3, 7]), 1)
    assert torch.equal(torch.rand(5, generator=g_one[0]), torch.rand(5, generator=g_batch[1]))
