"""Every attention backend matches SDPA on the same packed batch: outputs and gradients.

FlashAttention-2 runs here with its plain-torch reference kernel (the whole FA2 path of the
model: unpadding, indices, cu_seqlens, per-segment RoPE, windows, causal flag); FlexAttention
runs eagerly. The batch has documents of different lengths, one longer than the local
window, and padding at the end of a row. fp32: logits within 1e-5, gradients within 1e-4.
"""

from __future__ import annotations

import pytest
import torch

from mcbio.config.schema import PhaseConfig
from mcbio.train.composer_model import EncoderPretrainingModel
from mcbio.train.phases import PlannedPhase

SEQ = 96
# Row 0: three documents (10, 50, 36 tokens); row 1: two documents then 6 padding tokens.
# The tiny model's local window is 16 tokens (8 per side), so the 50- and 70-token documents
# span several windows.
DOCS = torch.tensor([[1] * 10 + [2] * 50 + [3] * 36, [1] * 70 + [2] * 20 + [0] * 6])
BACKENDS = {
    "flash_attention_2": {"attn_implementation": "flash_attention_2", "flash_attention_kernel": "reference"},
    "flex_attention": {"attn_implementation": "flex_attention"},
    "eager": {"attn_implementation": "eager"},
}
OUT_TOL, GRAD_TOL = 1e-5, 1e-4


def packed_batch(tokenizer) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(10, len(tokenizer), DOCS.shape, generator=g)
    ids[DOCS == 0] = tokenizer.pad_token_id
    return {"input_ids": ids, "document_ids": DOCS.clone(), "sample_index": torch.arange(2)}


def flex_available() -> str | None:
    try:
        import mcbio.model.flex  # noqa: F401
    except ImportError as err:
        return f"torch.nn.attention.flex_attention unavailable: {err}"
    return None


def run_backend(tokenizer, model_kw: dict, objective: str, window: str, document_masking: bool):
    """(logits, loss, {param name: grad}) of one forward/backward of the pretraining model."""
    from tests.conftest import build_tiny_modernbert

    hf = build_tiny_modernbert(tokenizer, **model_kw)
    model = EncoderPretrainingModel(hf, tokenizer, data_seed=42, causal_local_window=window, document_masking=document_masking)
    rate = 0.0 if objective == "clm" else 0.3
    model.set_phase(PlannedPhase(0, objective, PhaseConfig(objective=objective, mlm_probability=rate), 0, 1, 0))
    batch = packed_batch(tokenizer)
    out = model(batch)
    loss = model.loss(out, batch)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in hf.named_parameters() if p.grad is not None}
    return out["logits"].detach(), loss.detach(), grads


def max_differences(tokenizer, backend: str, objective: str, window: str, document_masking: bool) -> tuple[float, float]:
    ref_logits, ref_loss, ref_grads = run_backend(tokenizer, {"attn_implementation": "sdpa"}, objective, window, document_masking)
    logits, loss, grads = run_backend(tokenizer, BACKENDS[backend], objective, window, document_masking)
    real = DOCS != 0
    out_diff = (logits[real] - ref_logits[real]).abs().max().item()
    assert grads.keys() == ref_grads.keys() and len(grads) > 10
    grad_diff = max((grads[n] - ref_grads[n]).abs().max().item() for n in grads)
    assert torch.isfinite(loss) and abs(loss.item() - ref_loss.item()) < OUT_TOL
    return out_diff, grad_diff


@pytest.mark.parametrize("document_masking", [True, False], ids=["docmask", "nodocmask"])
@pytest.mark.parametrize("window", ["half", "full"])
@pytest.mark.parametrize("objective", ["clm", "mlm"], ids=["causal-clm", "bidirectional-mlm"])
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_backend_matches_sdpa(tiny_tokenizer, backend, objective, window, document_masking):
    if backend == "flex_attention" and (reason := flex_available()):
        pytest.skip(reason)
    out_diff, grad_diff = max_differences(tiny_tokenizer, backend, objective, window, document_masking)
    assert out_diff <= OUT_TOL, f"{backend} logits differ from SDPA by {out_diff:.2e}"
    assert grad_diff <= GRAD_TOL, f"{backend} gradients differ from SDPA by {grad_diff:.2e}"


def test_the_comparison_would_see_a_wrong_window(tiny_tokenizer):
    """The equivalence tests have power: half vs full window on the causal local layers differ."""
    half, _, _ = run_backend(tiny_tokenizer, BACKENDS["flash_attention_2"], "clm", "half", True)
    full, _, _ = run_backend(tiny_tokenizer, BACKENDS["flash_attention_2"], "clm", "full", True)
    assert (half - full)[DOCS != 0].abs().max() > 20 * OUT_TOL
    masked, _, _ = run_backend(tiny_tokenizer, BACKENDS["flash_attention_2"], "clm", "half", True)
    unmasked, _, _ = run_backend(tiny_tokenizer, BACKENDS["flash_attention_2"], "clm", "half", False)
    assert (masked - unmasked)[DOCS != 0].abs().max() > 20 * OUT_TOL


def test_flex_backend_runs_flex_attention_with_block_masks(tiny_tokenizer, monkeypatch):
    """The FlexAttention comparison compares FlexAttention: one flex call per layer, SDPA never called."""
    if reason := flex_available():
        pytest.skip(reason)
    import mcbio.model.flex as flex

    calls = []
    real = flex._kernel

    def counting(device):
        kernel = real(device)

        def call(q, k, v, block_mask):
            calls.append((type(block_mask).__name__, tuple(q.shape)))
            return kernel(q, k, v, block_mask=block_mask)
        return call

    def no_sdpa(*args, **kwargs):
        raise AssertionError("SDPA called on the flex_attention backend")

    monkeypatch.setattr(flex, "_kernel", counting)
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", no_sdpa)
    run_backend(tiny_tokenizer, BACKENDS["flex_attention"], "clm", "half", True)
    assert calls == [("BlockMask", (2, 2, SEQ, 16))] * 3  # 3 layers, (batch, heads, seq, head_dim)


@pytest.mark.slow
def test_compiled_block_masks_of_a_cuda_run_match_sdpa(tiny_tokenizer, monkeypatch):
    """On CUDA the block masks are built by torch.compile(create_block_mask), one graph for every
    mode and window; here that compiled construction runs on CPU (the kernel stays eager)."""
    if reason := flex_available():
        pytest.skip(reason)
    import mcbio.model.flex as flex
    from torch._dynamo.utils import counters

    monkeypatch.setitem(flex.COMPILE_DEVICES, "block_mask", ("cuda", "cpu"))
    monkeypatch.setattr(flex, "_COMPILED", {})
    graphs = counters["stats"]["unique_graphs"]
    try:
        for objective, window in (("clm", "half"), ("clm", "full"), ("mlm", "half")):
            out_diff, grad_diff = max_differences(tiny_tokenizer, "flex_attention", objective, window, True)
            assert out_diff <= OUT_TOL and grad_diff <= GRAD_TOL, (objective, window, out_diff, grad_diff)
    except Exception as err:  # no C++ toolchain for inductor: say so rather than pass
        if "compiler" in str(err).lower() or "InductorError" in type(err).__name__:
            pytest.skip(f"torch.compile cannot run on this CPU: {err}")
        raise
    assert counters["stats"]["unique_graphs"] - graphs == 1  # modes and windows share one compiled graph
