"""Init from local checkpoints (ModernBERT, CamemBERT/RoBERTa), export, reload, fill-mask."""

import torch
from transformers import AutoModelForMaskedLM, CamembertConfig, CamembertForMaskedLM, pipeline

from mcbio.config.schema import ModelConfig, PhaseConfig
from mcbio.data.tokenizer import load_tokenizer
from mcbio.model.build import build_masked_lm
from mcbio.model.export import export_hf
from mcbio.model.freezing import parse_layer_ranges
from mcbio.train.composer_model import EncoderPretrainingModel
from mcbio.train.phases import PlannedPhase


def _batch(tokenizer, n=2, seq=48):
    texts = ["Le patient présente une fièvre persistante depuis trois jours.", "Traitement par amoxicilline, évolution favorable."]
    rows = [tokenizer(t)["input_ids"] for t in texts]
    ids = torch.full((n, seq), tokenizer.pad_token_id)
    docs = torch.zeros((n, seq), dtype=torch.long)
    for r in range(n):
        a, b = rows[0], rows[1]
        ids[r, : len(a)], docs[r, : len(a)] = torch.tensor(a), 1
        ids[r, len(a) : len(a) + len(b)], docs[r, len(a) : len(a) + len(b)] = torch.tensor(b), 2
    return {"input_ids": ids, "document_ids": docs, "sample_index": torch.arange(n)}


def _train_steps(model, batch, steps=3):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model.loss(model(batch), batch)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


def test_init_from_local_modernbert_then_export_reload_fill_mask(tiny_hf_dir, tmp_path):
    tokenizer = load_tokenizer(tiny_hf_dir)
    hf = build_masked_lm(ModelConfig(init_from=str(tiny_hf_dir), attn_implementation="eager"), tokenizer, seed=0)
    reference = AutoModelForMaskedLM.from_pretrained(tiny_hf_dir)
    assert all(torch.equal(a, b) for a, b in zip(hf.state_dict().values(), reference.state_dict().values()))
    model = EncoderPretrainingModel(hf, tokenizer, data_seed=42)
    model.set_phase(PlannedPhase(0, "stable", PhaseConfig(objective="clm", mlm_probability=0.0), 0, 3, 0))
    _train_steps(model, _batch(tokenizer))
    hf.eval()
    out = export_hf(hf, tokenizer, tmp_path / "hf")
    reloaded = AutoModelForMaskedLM.from_pretrained(out).eval()
    enc = tokenizer(["Le patient présente une [MASK] persistante."], return_tensors="pt")
    model.switch.set_mode("bidirectional")  # the exported encoder is the bidirectional one
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**enc).logits, hf(**enc).logits, rtol=1e-4, atol=1e-4)
    fill = pipeline("fill-mask", model=str(out), tokenizer=str(out), device="cpu")
    preds = fill("Le patient présente une [MASK] persistante.")
    assert len(preds) == 5 and all("token_str" in p for p in preds)


def test_mlm_only_continued_pretraining_from_a_camembert_checkpoint(tiny_tokenizer, tmp_path):
    config = CamembertConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=48, max_position_embeddings=130, pad_token_id=tiny_tokenizer.pad_token_id)
    torch.manual_seed(0)
    CamembertForMaskedLM(config).save_pretrained(tmp_path / "camembert")
    tiny_tokenizer.save_pretrained(tmp_path / "camembert")
    tokenizer = load_tokenizer(tmp_path / "camembert")
    hf = build_masked_lm(ModelConfig(init_from=str(tmp_path / "camembert")), tokenizer, seed=0)
    assert hf.config.model_type == "camembert"
    model = EncoderPretrainingModel(hf, tokenizer, data_seed=42)
    model.set_phase(PlannedPhase(0, "stable", PhaseConfig(objective="mlm", mlm_probability=0.3, frozen_layers=["0"]), 0, 3, 0))
    assert not any(p.requires_grad for p in hf.roberta.encoder.layer[0].parameters())
    batch = _batch(tokenizer)
    # Packed documents stay apart here too: changing document 1 leaves document 2's logits alone.
    hf.eval()
    kw = model._generic_inputs(batch["input_ids"], batch["document_ids"])
    other = batch["input_ids"].clone()
    first = batch["document_ids"] == 1
    other[first] = torch.where(other[first] > 10, other[first] - 1, other[first])
    with torch.no_grad():
        a = hf(**kw).logits
        b = hf(**{**kw, "input_ids": other}).logits
    second = batch["document_ids"] == 2
    torch.testing.assert_close(a[second], b[second], rtol=0, atol=1e-5)
    losses = _train_steps(model, batch, steps=5)
    assert losses[-1] < losses[0]
    try:
        model.set_phase(PlannedPhase(0, "clm", PhaseConfig(objective="clm", mlm_probability=0.0), 0, 3, 0))
    except ValueError as err:
        assert "attention switch" in str(err)
    else:
        raise AssertionError("a causal phase on CamemBERT must be refused")


def test_layer_ranges():
    assert parse_layer_ranges(["0-2", "5"], 22) == [0, 1, 2, 5]
    for bad in (["3-1"], ["22"], ["a-b"]):
        try:
            parse_layer_ranges(bad, 22)
        except ValueError as err:
            assert "frozen_layers" in str(err)
        else:
            raise AssertionError(bad)
