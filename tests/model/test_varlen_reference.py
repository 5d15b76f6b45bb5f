"""The plain-torch reference of flash_attn_varlen_func: FlashAttention's documented semantics."""

import pytest
import torch

from mcbio.model.varlen_reference import flash_attn_varlen_func, flash_attn_varlen_qkvpacked_func, window_mask


def naive(q, k, v, causal, window, scale=None):
    """One sequence, loops over queries: query i sees keys j in [i + sk - sq - left, i + sk - sq + right]."""
    sq, sk = q.shape[0], k.shape[0]
    left, right = window
    if causal:
        right = 0
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    out = torch.zeros_like(q)
    for i in range(sq):
        centre = i + sk - sq
        lo = 0 if left < 0 else max(0, centre - left)
        hi = sk - 1 if right < 0 else min(sk - 1, centre + right)
        if lo > hi:
            continue  # no key: zeros
        s = torch.einsum("hd,jhd->hj", q[i], k[lo : hi + 1]) * scale
        out[i] = torch.einsum("hj,jhd->hd", s.softmax(-1), v[lo : hi + 1])
    return out


def _segments(lengths, heads=2, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    total = sum(lengths)
    q, k, v = (torch.randn(total, heads, dim, generator=g, dtype=torch.float64) for _ in range(3))
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    return q, k, v, cu


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("window", [(-1, -1), (3, 3), (5, 0), (2, -1), (0, 4)])
def test_matches_the_documented_rule_per_segment(causal, window):
    lengths = [7, 1, 12, 5]
    q, k, v, cu = _segments(lengths)
    out = flash_attn_varlen_func(q, k, v, cu, cu, max(lengths), max(lengths), causal=causal, window_size=window)
    expected = torch.cat([naive(q[a:b], k[a:b], v[a:b], causal, window) for a, b in zip(cu[:-1].tolist(), cu[1:].tolist())])
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_window_rule_examples():
    # Query i sees [i - left, i + right]; causal means right = 0; -1 is unlimited.
    assert window_mask(6, 6, False, (1, 2), "cpu")[3].nonzero().flatten().tolist() == [2, 3, 4, 5]
    assert window_mask(6, 6, True, (2, 2), "cpu")[3].nonzero().flatten().tolist() == [1, 2, 3]
    assert window_mask(6, 6, True, (-1, -1), "cpu")[3].nonzero().flatten().tolist() == [0, 1, 2, 3]
    assert window_mask(6, 6, False, (-1, 0), "cpu")[0].nonzero().flatten().tolist() == [0]
    # Bottom-right alignment when there are fewer queries than keys (FlashAttention >= 2.1).
    assert window_mask(2, 5, True, (-1, -1), "cpu").tolist() == [[True] * 4 + [False], [True] * 5]


def test_query_without_keys_gets_zeros_and_finite_gradients():
    q, k, v, cu = _segments([4])
    q.requires_grad_(True)
    # 4 queries, 2 keys, causal bottom-right aligned: queries 0 and 1 see no key.
    out = flash_attn_varlen_func(q, k[:2], v[:2], cu, torch.tensor([0, 2], dtype=torch.int32), 4, 2, causal=True)
    assert torch.equal(out[:2], torch.zeros_like(out[:2])) and out[2:].abs().sum() > 0
    out.sum().backward()
    assert torch.isfinite(q.grad).all()


def test_grouped_query_heads_and_packed_form():
    lengths = [5, 9]
    q, k, v, cu = _segments(lengths, heads=4)
    k2, v2 = k[:, :2], v[:, :2]  # 2 key/value heads shared by 4 query heads
    out = flash_attn_varlen_func(q, k2, v2, cu, cu, 9, 9, causal=True)
    rep = lambda t: t.repeat_interleave(2, dim=1)  # noqa: E731
    torch.testing.assert_close(out, flash_attn_varlen_func(q, rep(k2), rep(v2), cu, cu, 9, 9, causal=True))
    packed = flash_attn_varlen_qkvpacked_func(torch.stack([q, k, v], dim=1), cu, 9, window_size=(2, 2))
    torch.testing.assert_close(packed, flash_attn_varlen_func(q, k, v, cu, cu, 9, 9, window_size=(2, 2)))


def test_softmax_scale_dtype_and_errors():
    q, k, v, cu = _segments([6])
    out = flash_attn_varlen_func(q, k, v, cu, cu, 6, 6, softmax_scale=0.5)
    torch.testing.assert_close(out, naive(q, k, v, False, (-1, -1), scale=0.5))
    half = flash_attn_varlen_func(q.bfloat16(), k.bfloat16(), v.bfloat16(), cu, cu, 6, 6)
    assert half.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="max_seqlen"):
        flash_attn_varlen_func(q, k, v, cu, cu, 5, 5)
    with pytest.raises(NotImplementedError, match="softcap"):
        flash_attn_varlen_func(q, k, v, cu, cu, 6, 6, softcap=30.0)
