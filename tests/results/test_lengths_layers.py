import pytest
import torch

from mcbio.results.lengths import length_stats, task_texts, token_lengths
from mcbio.results.layers import layer_cka, layer_weight_change, linear_cka


def test_length_stats_hand_example():
    s = length_stats([100, 200, 300, 600, 1000], "t", "tok", threshold=512)
    assert (s.n, s.mean, s.median, s.max) == (5, 440.0, 300.0, 1000)
    assert s.p95 == pytest.approx(920.0)  # linear interpolation between 600 and 1000
    assert s.share_over == pytest.approx(0.4)


def test_task_lengths_with_a_real_tokenizer(tiny_tokenizer):
    texts = task_texts("mini_ner", "test", None)
    lengths = token_lengths(texts, tiny_tokenizer)
    assert len(lengths) == len(texts) > 0
    assert all(n >= len(t.split()) for n, t in zip(lengths, texts))  # at least one token per word


def test_linear_cka_properties():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 16, generator=g)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.0 * x @ q + 1.0) == pytest.approx(1.0)  # invariant to rotation, scale, shift
    assert linear_cka(x, torch.randn(200, 16, generator=g)) < 0.3


def test_layer_change_on_tiny_models(tmp_path, tiny_tokenizer, tiny_model_factory):
    from mcbio.model.export import export_hf

    start = tiny_model_factory(seed=0)
    export_hf(start, tiny_tokenizer, tmp_path / "start")
    with torch.no_grad():
        for p in start.model.layers[1].parameters():
            p.mul_(1.5)
    export_hf(start, tiny_tokenizer, tmp_path / "end")
    change = layer_weight_change(tmp_path / "start", tmp_path / "end")
    assert change[0] == 0.0 and change[2] == 0.0
    assert change[1] == pytest.approx(0.5, rel=1e-4)
    # Norm layers make a uniform rescaling nearly invisible to CKA: move layer 1 at random instead.
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in start.model.layers[1].parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.5)
    export_hf(start, tiny_tokenizer, tmp_path / "noisy")
    texts = ["Le patient présente une fièvre.", "Traitement par amoxicilline pendant sept jours."]
    same = layer_cka(tmp_path / "start", tmp_path / "start", texts)
    moved = layer_cka(tmp_path / "start", tmp_path / "noisy", texts)
    assert same == pytest.approx([1.0] * 3)
    assert moved[0] == pytest.approx(1.0) and moved[1] < 0.99
