"""The FlashAttention-2 path on CPU, with the reference kernel in place of flash_attn.

The forward pass of the unpadded path (flat input_ids + indices + cu_seqlens) crashed in
transformers' padding check when no attention_mask was passed; these tests run it end to
end: the kernel really runs, the build errors name the keys, and the weights are the SDPA
model's so that the export is backend-free.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from mcbio.config.loader import ConfigError
from mcbio.config.schema import ModelConfig
from mcbio.model import varlen_reference
from mcbio.model.attention import AttentionSwitch, encoder_inputs
from mcbio.model.build import build_masked_lm

REFERENCE = {"attn_implementation": "flash_attention_2", "flash_attention_kernel": "reference"}


def _packed(seq=64):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 1000, (2, seq), generator=g)
    docs = torch.tensor([[1] * 20 + [2] * 44, [1] * 50 + [0] * 14])
    return ids, docs


@pytest.mark.parametrize("mode", ["bidirectional", "causal"])
@pytest.mark.parametrize("window", ["half", "full"])
def test_unpadded_forward_and_backward_run_the_kernel(tiny_model_factory, monkeypatch, mode, window):
    calls = []
    real = varlen_reference.flash_attn_varlen_func

    def counting(q, k, v, cu_q, cu_k, *args, **kwargs):
        calls.append((cu_q.tolist(), kwargs["causal"], kwargs["window_size"]))
        return real(q, k, v, cu_q, cu_k, *args, **kwargs)

    monkeypatch.setattr(varlen_reference, "flash_attn_varlen_func", counting)
    model = tiny_model_factory(**REFERENCE)
    assert model.config._attn_implementation == "flash_attention_2"
    switch = AttentionSwitch(model, causal_local_window=window)
    switch.set_mode(mode)
    ids, docs = _packed()
    kw = encoder_inputs(ids, docs, "flash_attention_2")
    assert kw["input_ids"].dim() == 1  # unpadded
    logits = model(**kw).logits
    assert logits.shape == (2, 64, model.config.vocab_size)
    assert torch.equal(logits[docs == 0], torch.zeros_like(logits[docs == 0]))  # re-padded with zeros
    logits[docs != 0].square().mean().backward()
    assert model.model.layers[1].attn.Wqkv.weight.grad.abs().sum() > 0
    # One kernel call per layer, one varlen sequence per document, the switch's flags.
    assert len(calls) == model.config.num_hidden_layers
    assert all(cu == [0, 20, 64, 114] for cu, _, _ in calls)
    left = 8 if window == "half" else 16
    expected = {"bidirectional": [(False, (-1, -1)), (False, (8, 8)), (False, (8, 8))],
                "causal": [(True, (-1, -1)), (True, (left, 0)), (True, (left, 0))]}[mode]
    assert [(c, w) for _, c, w in calls] == expected


def test_positions_restart_per_document(tiny_model_factory):
    """Document 2 of a pack gives the logits it has alone: RoPE restarts at each cu_seqlens start."""
    model = tiny_model_factory(**REFERENCE)
    AttentionSwitch(model).set_mode("causal")
    ids, docs = _packed()
    with torch.no_grad():
        packed = model(**encoder_inputs(ids[:1], docs[:1], "flash_attention_2")).logits
        alone = model(**encoder_inputs(ids[:1, 20:], torch.ones(1, 44, dtype=torch.long), "flash_attention_2")).logits
    torch.testing.assert_close(packed[:, 20:], alone, rtol=1e-5, atol=1e-5)


def test_plain_hf_call_with_a_padding_mask(tiny_model_factory, tiny_tokenizer):
    """model(**tokenizer(...)) unpads inside transformers and matches the SDPA model."""
    fa2, sdpa = tiny_model_factory(**REFERENCE), tiny_model_factory()
    enc = tiny_tokenizer(["Le patient présente une fièvre.", "Traitement par amoxicilline pendant sept jours."],
                         padding=True, return_tensors="pt")
    with torch.no_grad():
        a, b = fa2(**enc).logits, sdpa(**enc).logits
    real = enc["attention_mask"].bool()
    torch.testing.assert_close(a[real], b[real], rtol=1e-5, atol=1e-5)


def test_same_weights_as_the_sdpa_model(tiny_model_factory):
    fa2, sdpa = tiny_model_factory(**REFERENCE).state_dict(), tiny_model_factory().state_dict()
    assert fa2.keys() == sdpa.keys()
    assert all(torch.equal(fa2[k], sdpa[k]) for k in fa2)


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is not None, reason="flash_attn is installed here")
def test_without_flash_attn_flash_attention_2_is_a_configuration_error(tiny_tokenizer):
    cfg = ModelConfig(vocab_size=1024, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                      attn_implementation="flash_attention_2")
    with pytest.raises(ConfigError, match=r"'model.attn_implementation'=flash_attention_2 needs the flash_attn package") as err:
        build_masked_lm(cfg, tiny_tokenizer, seed=0)
    assert "flash_attention_kernel=reference" in str(err.value)


def test_kernel_key_outside_flash_attention_2_is_refused(tiny_tokenizer):
    cfg = ModelConfig(vocab_size=1024, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                      attn_implementation="sdpa", flash_attention_kernel="reference")
    with pytest.raises(ConfigError, match="'model.flash_attention_kernel'=reference only applies"):
        build_masked_lm(cfg, tiny_tokenizer, seed=0)
