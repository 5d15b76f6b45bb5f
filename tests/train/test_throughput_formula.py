"""The MFU formula of benchmarks/train_throughput.py counts the attention that runs."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from mcbio.train.composer_model import EncoderPretrainingModel
from tests.conftest import REPO


def _bench():
    spec = importlib.util.spec_from_file_location("train_throughput", REPO / "benchmarks" / "train_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("window", ["half", "full"])
@pytest.mark.parametrize("causal", [False, True])
def test_keys_per_token_equal_the_masks_the_model_applies(tiny_model_factory, tiny_tokenizer, window, causal):
    bench = _bench()
    model = EncoderPretrainingModel(tiny_model_factory(), tiny_tokenizer, data_seed=42, causal_local_window=window)
    model.switch.set_mode("causal" if causal else "bidirectional")
    lengths = np.array([5, 30, 12, 17])  # local window 16: shorter and longer documents
    docs = torch.cat([torch.full((int(n),), i + 1) for i, n in enumerate(lengths)])[None]
    glob, local = model.switch.allowed(docs)
    reach = bench.local_reach(model, causal)
    assert reach == (8 if not causal or window == "half" else 16)
    assert bench.attended_keys_per_token(lengths, causal, None) == pytest.approx(glob.sum().item() / docs.numel())
    assert bench.attended_keys_per_token(lengths, causal, reach) == pytest.approx(local.sum().item() / docs.numel())


def test_flops_follow_causal_local_window(tiny_model_factory, tiny_tokenizer):
    bench = _bench()
    lengths = np.array([4000, 4192])
    flops = {}
    for window in ("half", "full"):
        model = EncoderPretrainingModel(tiny_model_factory(), tiny_tokenizer, data_seed=42, causal_local_window=window)
        flops[window], formula = bench.train_flops_per_token(model, lengths, causal=True)
    assert flops["full"] > flops["half"]
    assert "16 back" in formula  # the last formula printed: full window, 16 tokens back
