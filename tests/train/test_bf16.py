"""One training step under the paper configs' precision (amp_bf16), on CPU autocast, every backend.

Composer applies bf16 autocast only on CUDA; the same autocast on CPU makes dtype errors of
any backend (masks, rotary, kernels, loss) surface in CI.
"""

from __future__ import annotations

import pytest
import torch

from mcbio.config import PretrainRunConfig, load_config
from mcbio.config.schema import OptimizerConfig, PhaseConfig
from mcbio.train.composer_model import EncoderPretrainingModel
from mcbio.train.optim import build_optimizer
from mcbio.train.phases import PlannedPhase
from mcbio.train.precision import autocast
from tests.conftest import build_tiny_modernbert

BACKENDS = {
    "sdpa": {"attn_implementation": "sdpa"},
    "flash_attention_2-reference": {"attn_implementation": "flash_attention_2", "flash_attention_kernel": "reference"},
    "flex_attention": {"attn_implementation": "flex_attention"},
}


def _batch(tokenizer):
    g = torch.Generator().manual_seed(5)
    docs = torch.tensor([[1] * 30 + [2] * 50, [1] * 70 + [0] * 10])
    ids = torch.randint(10, len(tokenizer), docs.shape, generator=g)
    ids[docs == 0] = tokenizer.pad_token_id
    return {"input_ids": ids, "document_ids": docs, "sample_index": torch.arange(2)}


def _model(tokenizer, backend, objective):
    model = EncoderPretrainingModel(build_tiny_modernbert(tokenizer, **BACKENDS[backend]).train(), tokenizer, data_seed=42)
    rate = 0.0 if objective == "clm" else 0.3
    model.set_phase(PlannedPhase(0, objective, PhaseConfig(objective=objective, mlm_probability=rate), 0, 1, 0))
    return model


def test_paper_configs_train_in_bf16():
    for name in ("base_clm_detour", "large_mlm_control"):
        assert load_config(PretrainRunConfig, f"experiments/{name}/config.yaml").train.precision == "amp_bf16"


@pytest.mark.parametrize("objective", ["clm", "mlm"])
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_one_amp_bf16_training_step_on_cpu_autocast(tiny_tokenizer, backend, objective):
    batch = _batch(tiny_tokenizer)
    reference = _model(tiny_tokenizer, backend, objective)
    with torch.no_grad():
        fp32_loss = reference.loss(reference(batch), batch)
    model = _model(tiny_tokenizer, backend, objective)
    opt = build_optimizer(model, OptimizerConfig(), lr=1e-3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with autocast("amp_bf16", "cpu"):  # as Composer does on CUDA: forward and loss inside, backward outside
        out = model(batch)
        loss = model.loss(out, batch)
    assert out["logits"].dtype == torch.bfloat16  # autocast really ran the model in bf16
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and loss.item() == pytest.approx(fp32_loss.item(), rel=2e-2)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    moved = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert any("attn.Wqkv" in n for n in moved) and all(p.dtype == torch.float32 for p in model.parameters())
