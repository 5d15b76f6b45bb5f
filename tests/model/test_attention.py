"""The attention switch: causal everywhere (global and sliding layers), documents kept apart."""

import pytest
import torch

from mcbio.model.attention import AttentionSwitch, document_position_ids, encoder_inputs, segment_ids

SEQ = 64  # > the tiny model's 16-token local window, so sliding layers matter


def _logits(model, ids, docs):
    with torch.no_grad():
        return model(**encoder_inputs(ids, docs, model.config._attn_implementation)).logits


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("window", ["half", "full"])
def test_causal_mode_never_sees_the_future(tiny_model_factory, impl, window):
    model = tiny_model_factory(attn_implementation=impl)
    assert any(layer.attn.local_attention != (-1, -1) for layer in model.model.layers), "needs sliding layers"
    switch = AttentionSwitch(model, causal_local_window=window)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (2, SEQ), generator=g)
    docs = torch.ones_like(ids)
    changed = ids.clone()
    changed[:, 40:] = torch.randint(5, 1000, (2, SEQ - 40), generator=g)

    switch.set_mode("causal")
    a, b = _logits(model, ids, docs), _logits(model, changed, docs)
    torch.testing.assert_close(a[:, :40], b[:, :40], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, 40:], b[:, 40:])

    switch.set_mode("bidirectional")
    a, b = _logits(model, ids, docs), _logits(model, changed, docs)
    assert (a[:, :40] - b[:, :40]).abs().amax() > 1e-4  # bidirectional attention does see the future


def test_causal_flag_on_sliding_layers_too(tiny_model_factory):
    """Only the sliding layers (global_attn_every_n_layers huge): the future must still be hidden."""
    model = tiny_model_factory(attn_implementation="sdpa", global_attn_every_n_layers=1000)
    assert sum(layer.attn.local_attention == (-1, -1) for layer in model.model.layers) == 1  # layer 0 only
    switch = AttentionSwitch(model)
    switch.set_mode("causal")
    ids = torch.randint(5, 1000, (1, SEQ))
    changed = ids.clone()
    changed[:, 30] = (ids[:, 30] + 1) % 1000
    a, b = _logits(model, ids, torch.ones_like(ids)), _logits(model, changed, torch.ones_like(ids))
    torch.testing.assert_close(a[:, :30], b[:, :30], rtol=0, atol=1e-6)


@pytest.mark.parametrize("window,reach", [("half", 8), ("full", 16)])
def test_local_window_under_causal_attention(tiny_model_factory, window, reach):
    model = tiny_model_factory()
    switch = AttentionSwitch(model, causal_local_window=window)
    docs = torch.ones(1, 40, dtype=torch.long)
    switch.set_mode("causal")
    glob, local = switch.allowed(docs)
    q = 30
    assert local[0, 0, q].nonzero().flatten().tolist() == list(range(q - reach, q + 1))
    assert glob[0, 0, q].nonzero().flatten().tolist() == list(range(q + 1))
    switch.set_mode("bidirectional")
    _, local = switch.allowed(docs)
    assert local[0, 0, q].nonzero().flatten().tolist() == list(range(q - 8, q + 9))  # 16-token window, 8 per side


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("mode", ["bidirectional", "causal"])
def test_packed_documents_do_not_see_each_other(tiny_model_factory, impl, mode):
    model = tiny_model_factory(attn_implementation=impl)
    switch = AttentionSwitch(model)
    switch.set_mode(mode)
    g = torch.Generator().manual_seed(1)
    doc_a, doc_b = torch.randint(5, 1000, (30,), generator=g), torch.randint(5, 1000, (34,), generator=g)
    packed = torch.cat([doc_a, doc_b])[None]
    docs = torch.tensor([[1] * 30 + [2] * 34])
    other = packed.clone()
    other[0, :30] = torch.randint(5, 1000, (30,), generator=g)  # change document 1 only
    a, b = _logits(model, packed, docs), _logits(model, other, docs)
    torch.testing.assert_close(a[:, 30:], b[:, 30:], rtol=0, atol=1e-6)
    # Document 2 in the pack gives the logits it has alone (positions restart per document).
    alone = _logits(model, doc_b[None], torch.ones(1, 34, dtype=torch.long))
    torch.testing.assert_close(a[:, 30:], alone, rtol=1e-4, atol=1e-4)


def test_without_document_masking_documents_interact(tiny_model_factory):
    model = tiny_model_factory()
    AttentionSwitch(model, document_masking=False)
    packed = torch.randint(5, 1000, (1, 64))
    docs = torch.tensor([[1] * 30 + [2] * 34])
    other = packed.clone()
    other[0, :30] = (packed[0, :30] + 1) % 1000

    def logits(ids):
        with torch.no_grad():
            return model(**encoder_inputs(ids, docs, "sdpa", document_masking=False)).logits

    assert not torch.allclose(logits(packed)[:, 30:], logits(other)[:, 30:])


def test_position_ids_restart_per_document():
    docs = torch.tensor([[1, 1, 1, 2, 2, 3, 0, 0]])
    assert document_position_ids(docs).tolist() == [[0, 1, 2, 0, 1, 0, 0, 1]]


def test_without_document_masking_one_segment_per_row_on_every_backend():
    """document_masking=false: positions run across the row and cu_seqlens has one sequence per row."""
    ids = torch.arange(16).reshape(2, 8)
    docs = torch.tensor([[1, 1, 1, 2, 2, 2, 2, 2], [1, 1, 1, 1, 1, 2, 0, 0]])
    assert segment_ids(docs, document_masking=False).tolist() == [[1] * 8, [1] * 6 + [0, 0]]
    dense = encoder_inputs(ids, docs, "sdpa", document_masking=False)
    assert dense["position_ids"].tolist() == [list(range(8)), list(range(6)) + [0, 1]]
    assert dense["attention_mask"].tolist() == [[1] * 8, [1] * 6 + [0, 0]]
    flash = encoder_inputs(ids, docs, "flash_attention_2", document_masking=False)
    assert flash["cu_seqlens"].tolist() == [0, 8, 14] and flash["max_seqlen"] == 8
    masked = encoder_inputs(ids, docs, "flash_attention_2", document_masking=True)
    assert masked["cu_seqlens"].tolist() == [0, 3, 8, 13, 14]


def test_padding_sees_only_padding():
    """No query row is ever empty (no NaN anywhere), and real tokens never see padding."""
    import types

    switch = AttentionSwitch.__new__(AttentionSwitch)
    switch.config, switch.mode, switch.causal_local_window = types.SimpleNamespace(local_attention=4), "causal", "half"
    switch.document_masking = True
    glob, local = switch.allowed(torch.tensor([[1, 1, 2, 0, 0]]))
    for mask in (glob, local):
        assert mask[0, 0].any(dim=-1).all()
        assert not mask[0, 0, :3, 3:].any() and not mask[0, 0, 3:, :3].any()


def test_flash_attention_inputs_are_one_varlen_sequence_per_document():
    """The FA2 path (GPU only) unpads to cu_seqlens per document segment; the arithmetic runs on CPU."""
    ids = torch.arange(16).reshape(2, 8)
    docs = torch.tensor([[1, 1, 1, 2, 2, 2, 2, 2], [1, 1, 1, 1, 1, 2, 0, 0]])
    kw = encoder_inputs(ids, docs, "flash_attention_2")
    # transformers' ModernBertModel.forward indexes input_ids[:, [-1, 0]] when no mask is given,
    # which a flat (unpadded) input_ids cannot take: the mask must always be there.
    assert kw["attention_mask"].tolist() == (docs != 0).tolist()
    assert kw["cu_seqlens"].tolist() == [0, 3, 8, 13, 14]
    assert kw["max_seqlen"] == 5
    assert kw["input_ids"].tolist() == list(range(14))
    assert kw["indices"].tolist() == list(range(14))
    assert (kw["batch_size"], kw["seq_len"]) == (2, 8)


def test_switch_rejects_other_architectures(tiny_tokenizer):
    from transformers import BertConfig, BertForMaskedLM

    bert = BertForMaskedLM(BertConfig(vocab_size=100, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8))
    with pytest.raises(TypeError, match="ModernBERT"):
        AttentionSwitch(bert)
