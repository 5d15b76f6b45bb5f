"""Long context for real, on CPU: 8192-token training steps and a 4096-token evaluation example.

A tiny ModernBERT (2 layers: one global, one with the paper's 128-token local window) takes
one CLM step and one MLM step at seq_len=8192 with document masking, through Composer, with
SDPA and with the FlashAttention-2 path (reference kernel); both backends give the same
losses. One 4096-token example runs through the fine-tuning classification head.
Peak memory of each: ``benchmarks/long_context_memory.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mcbio.config.schema import CheckpointConfig, ModelConfig, PhaseConfig, PretrainDataConfig, TrainConfig
from mcbio.data.shards import PackedShards, write_packed_shards
from mcbio.model.build import build_masked_lm
from mcbio.train.composer_model import EncoderPretrainingModel
from mcbio.train.pretrain import build_trainer

SEQ = 8192
# Row 1: four documents filling the row exactly (one of 5000 tokens, 39 local windows long);
# row 2: three documents and 192 padding tokens at the end.
DOC_LENGTHS = [600, 5000, 1800, 792, 3000, 4000, 1000]
BACKENDS = {"sdpa": {}, "flash_attention_2-reference": {"attn_implementation": "flash_attention_2",
                                                        "flash_attention_kernel": "reference"}}


def tiny_long_model(**overrides) -> ModelConfig:
    fields = dict(vocab_size=1024, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                  max_position_embeddings=SEQ, local_attention=128, global_attn_every_n_layers=3,
                  attn_implementation="sdpa")
    fields.update(overrides)
    return ModelConfig(**fields)


@pytest.fixture(scope="module")
def long_shards(tiny_tokenizer, tmp_path_factory) -> PackedShards:
    rng = np.random.default_rng(0)
    docs = [rng.integers(10, 1000, size=n).tolist() for n in DOC_LENGTHS]
    folder = tmp_path_factory.mktemp("long_shards")
    write_packed_shards(docs, folder, SEQ, tiny_tokenizer.pad_token_id, sequences_per_shard=8, progress=False)
    shards = PackedShards(folder)
    assert len(shards) == 2
    return shards


class Losses:
    def __init__(self) -> None:
        self.values: dict[int, float] = {}
        self.objectives: dict[int, str] = {}

    def run_event(self, event, state, logger) -> None:
        from composer.core import Event

        if event == Event.BEFORE_FORWARD:
            self.objectives[int(state.timestamp.batch)] = state.model.objective
        elif event == Event.BATCH_END:
            self.values[int(state.timestamp.batch) - 1] = float(state.loss)


def one_clm_and_one_mlm_step(tokenizer, shards, out_dir, **model_overrides) -> Losses:
    from composer.core import Callback

    phases = {
        "stable": PhaseConfig(objective="clm", mlm_probability=0.0, tokens=SEQ, lr=1e-3),
        "decay": PhaseConfig(objective="mlm", mlm_probability=0.15, tokens=SEQ, schedule="one_minus_sqrt",
                             lr=1e-3, final_lr=1e-4),
    }
    model_cfg = tiny_long_model(**model_overrides)
    train = TrainConfig(global_batch_size=1, device_microbatch_size=1, precision="fp32", phases=phases,
                        checkpoint=CheckpointConfig(save_interval="100ba"), progress_bar=False, log_interval="100ba")
    model = EncoderPretrainingModel(build_masked_lm(model_cfg, tokenizer, seed=17), tokenizer, data_seed=42)
    trainer = build_trainer(PretrainDataConfig(seq_len=SEQ), train, model, shards, out_dir, run_name="long")
    losses = Losses()
    trainer.state.callbacks.append(type("LossCallback", (Callback,), {"run_event": losses.run_event})())
    try:
        trainer.fit()
    finally:
        trainer.close()
    return losses


@pytest.fixture(scope="module")
def long_runs(tiny_tokenizer, long_shards, tmp_path_factory):
    """Each backend's two 8192-token steps, run once per module (on first use)."""
    cache: dict[str, Losses] = {}

    def get(name: str) -> Losses:
        if name not in cache:
            cache[name] = one_clm_and_one_mlm_step(tiny_tokenizer, long_shards, tmp_path_factory.mktemp(name), **BACKENDS[name])
        return cache[name]

    return get


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_8192_token_clm_and_mlm_steps(long_runs, backend):
    losses = long_runs(backend)
    assert losses.objectives == {0: "clm", 1: "mlm"}
    assert all(np.isfinite(v) and v > 0 for v in losses.values.values())


def test_8192_token_steps_agree_across_backends(long_runs):
    sdpa, fa2 = long_runs("sdpa").values, long_runs("flash_attention_2-reference").values
    for batch in (0, 1):
        assert fa2[batch] == pytest.approx(sdpa[batch], rel=1e-4), batch


def test_4096_token_example_through_the_classification_head(tiny_tokenizer, tmp_path):
    from mcbio.evaluate.heads import SequenceClassifier
    from mcbio.model.export import export_hf

    export_hf(build_masked_lm(tiny_long_model(), tiny_tokenizer, seed=0), tiny_tokenizer, tmp_path / "hf")
    head = SequenceClassifier(str(tmp_path / "hf"), num_labels=4).eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(10, 1000, (1, 4096), generator=g)
    ids[0, 0] = tiny_tokenizer.cls_token_id
    mask = torch.ones_like(ids)
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % 1000
    with torch.no_grad():
        logits = head(ids, mask)
        other = head(changed, mask)
    assert logits.shape == (1, 4) and torch.isfinite(logits).all()
    # The [CLS] head sees the 4096th token (global layers attend over the whole example).
    assert (logits - other).abs().max() > 1e-7
