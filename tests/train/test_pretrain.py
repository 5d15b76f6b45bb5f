"""Composer training over phases: optimizer state across the switch, frozen layers, resume,
the LR of every batch, and the FlashAttention-2 path (reference kernel) through Composer and export."""

import dataclasses

from pathlib import Path

import pytest
import torch
from composer.core import Callback, Event

from mcbio.config.schema import CheckpointConfig, ModelConfig, PhaseConfig, PretrainDataConfig, PretrainRunConfig, TrackingConfig, TrainConfig
from mcbio.data.corpus import iter_documents
from mcbio.data.shards import PackedShards, write_packed_shards
from mcbio.model.build import build_masked_lm
from mcbio.train.composer_model import EncoderPretrainingModel
from mcbio.model.export import export_hf
from mcbio.train.phases import PhasedLRSchedule, plan_phases
from mcbio.train.pretrain import build_trainer

SEQ, BATCH = 64, 4
TOKENS_PER_BATCH = SEQ * BATCH


def tiny_cfg(stable_batches=4, decay_batches=3, frozen=(), save="2ba", objective="clm") -> PretrainRunConfig:
    phases = {
        "stable": PhaseConfig(objective=objective, mlm_probability=0.0 if objective == "clm" else 0.3,
                              tokens=stable_batches * TOKENS_PER_BATCH, warmup_tokens=TOKENS_PER_BATCH,
                              lr=1e-3, frozen_layers=list(frozen)),
        "decay": PhaseConfig(objective="mlm", mlm_probability=0.15, tokens=decay_batches * TOKENS_PER_BATCH,
                             schedule="one_minus_sqrt", lr=1e-3, final_lr=1e-4),
    }
    return PretrainRunConfig(
        name="tiny",
        tracking=TrackingConfig(wandb=False),
        model=ModelConfig(vocab_size=1024, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=48,
                          max_position_embeddings=256, local_attention=16, attn_implementation="sdpa"),
        data=PretrainDataConfig(seq_len=SEQ),
        train=TrainConfig(global_batch_size=BATCH, device_microbatch_size=2, precision="fp32", phases=phases,
                          checkpoint=CheckpointConfig(save_interval=save), progress_bar=False, log_interval="100ba"),
    )


@pytest.fixture(scope="module")
def shards(tiny_tokenizer, tmp_path_factory) -> PackedShards:
    folder = tmp_path_factory.mktemp("shards")
    docs = (tiny_tokenizer(d.text)["input_ids"] for d in iter_documents(max_documents=40))
    write_packed_shards(docs, folder, SEQ, tiny_tokenizer.pad_token_id, sequences_per_shard=64, progress=False)
    return PackedShards(folder)


class Recorder(Callback):
    """Loss per batch; optimizer state and parameters around the phase switch."""

    def __init__(self, switch_batch: int, crash_after: int | None = None) -> None:
        self.switch_batch, self.crash_after = switch_batch, crash_after
        self.losses: dict[int, float] = {}
        self.snapshots: dict[str, dict] = {}

    @staticmethod
    def _opt_state(state) -> dict:
        opt = state.optimizers[0]
        return {id(p): {k: v.clone() for k, v in s.items()} for p, s in opt.state.items()}

    def run_event(self, event, state, logger) -> None:
        batch = int(state.timestamp.batch)
        if event == Event.BATCH_END:
            self.losses[batch - 1] = float(state.loss)
            if batch == self.switch_batch:
                self.snapshots["before"] = self._opt_state(state)
            if self.crash_after is not None and batch == self.crash_after:
                raise KeyboardInterrupt("simulated kill")
        elif event == Event.BEFORE_FORWARD and batch == self.switch_batch and "after" not in self.snapshots:
            self.snapshots["after"] = self._opt_state(state)
            self.snapshots["lr_after"] = state.optimizers[0].param_groups[0]["lr"]
            self.snapshots["objective"] = state.model.objective


def run(cfg, shards, tokenizer, out_dir: Path, recorder: Callback, duration=None):
    model = EncoderPretrainingModel(build_masked_lm(cfg.model, tokenizer, cfg.train.seed), tokenizer, cfg.train.data_seed,
                                    cfg.model.causal_local_window, cfg.model.document_masking)
    trainer = build_trainer(cfg.data, cfg.train, model, shards, out_dir, run_name=cfg.name)
    trainer.state.callbacks.append(recorder)
    try:
        trainer.fit()
    except KeyboardInterrupt:
        pass
    finally:
        trainer.close()
    return model


def test_optimizer_state_carries_across_the_phase_switch(shards, tiny_tokenizer, tmp_path):
    cfg = tiny_cfg(frozen=["0-1"])
    rec = Recorder(switch_batch=4)
    model = run(cfg, shards, tiny_tokenizer, tmp_path, rec)
    before, after = rec.snapshots["before"], rec.snapshots["after"]
    assert before and before.keys() == after.keys()
    for key in before:
        for name in before[key]:
            assert torch.equal(before[key][name], after[key][name])
    assert rec.snapshots["objective"] == "mlm"
    assert rec.snapshots["lr_after"] == pytest.approx(1e-3)  # schedule restarted at the decay phase's peak
    assert sorted(rec.losses) == list(range(7))
    # Frozen layers were trainable again in phase 2 (they have optimizer state only from then on).
    assert all(p.requires_grad for p in model.model.parameters())


def test_frozen_layers_unchanged_during_phase_1(shards, tiny_tokenizer, tmp_path):
    cfg = tiny_cfg(stable_batches=3, decay_batches=1, frozen=["0-1"])
    cfg.train.phases = {"stable": cfg.train.phases["stable"]}
    cfg.train.phases["stable"].tokens = 3 * TOKENS_PER_BATCH
    init = build_masked_lm(cfg.model, tiny_tokenizer, cfg.train.seed)
    model = run(cfg, shards, tiny_tokenizer, tmp_path, Recorder(switch_batch=-1))
    for i, (old, new) in enumerate(zip(init.model.layers, model.model.model.layers)):
        same = all(torch.equal(a, b) for a, b in zip(old.parameters(), new.parameters()))
        assert same == (i in (0, 1)), f"layer {i}"
    assert not torch.equal(init.model.embeddings.tok_embeddings.weight, model.model.model.embeddings.tok_embeddings.weight)


def test_killed_run_resumes_with_the_same_losses(shards, tiny_tokenizer, tmp_path):
    """Killed after batch 3 (checkpoint at 2), resumed: losses match the uninterrupted run.

    Tolerance: 1e-6 relative. On CPU in fp32 the resumed run replays the same data, masks
    and LR, so in practice the losses are bit-identical.
    """
    full = Recorder(switch_batch=4)
    run(tiny_cfg(), shards, tiny_tokenizer, tmp_path / "full", full)
    killed = Recorder(switch_batch=4, crash_after=3)
    run(tiny_cfg(), shards, tiny_tokenizer, tmp_path / "resumed", killed)
    assert max(killed.losses) == 2  # died during batch 3's end hook, after the batch-2 checkpoint
    resumed = Recorder(switch_batch=4)
    run(tiny_cfg(), shards, tiny_tokenizer, tmp_path / "resumed", resumed)
    assert min(resumed.losses) == 2  # picked up from the checkpoint at batch 2, through the phase switch
    for batch, loss in resumed.losses.items():
        assert loss == pytest.approx(full.losses[batch], rel=1e-6), batch
    assert sorted(resumed.losses) == list(range(2, 7))


class StepLR(Callback):
    """The LR each optimizer step actually uses, by batch index, read inside optimizer.step."""

    def __init__(self) -> None:
        self.lrs: dict[int, float] = {}
        self.initial_lrs: dict[int, float] = {}
        self.losses: dict[int, float] = {}

    def fit_start(self, state, logger) -> None:
        opt = state.optimizers[0]
        step = opt.step

        def recording_step(*args, **kwargs):
            batch = int(state.timestamp.batch)
            self.lrs[batch] = opt.param_groups[0]["lr"]
            self.initial_lrs[batch] = opt.param_groups[0]["initial_lr"]
            return step(*args, **kwargs)

        opt.step = recording_step

    def batch_end(self, state, logger) -> None:
        self.losses[int(state.timestamp.batch) - 1] = float(state.loss)


def test_lr_of_every_batch_is_the_schedules(shards, tiny_tokenizer, tmp_path):
    """Batch b trains at lr(b): first batch, across warmup, at the phase switch, at the last batch.

    Composer steps schedulers before the batch counter advances; a scheduler reading the
    counter gave batch b the LR of b - 1 (warmup's first value twice, the last step short of final_lr).
    """
    cfg = tiny_cfg(stable_batches=5, decay_batches=4)
    cfg.train.phases["stable"].warmup_tokens = 3 * TOKENS_PER_BATCH
    rec = StepLR()
    run(cfg, shards, tiny_tokenizer, tmp_path, rec)
    plan = plan_phases(cfg.train.phases, TOKENS_PER_BATCH)
    schedule = PhasedLRSchedule(plan)
    assert sorted(rec.lrs) == list(range(9))
    for batch, lr in rec.lrs.items():
        assert lr == pytest.approx(schedule.lr_at(batch), rel=1e-12), batch
    first, warm2, warm3 = (pytest.approx(1e-3 * k / 3) for k in (1, 2, 3))
    assert (rec.lrs[0], rec.lrs[1], rec.lrs[2]) == (first, warm2, warm3)  # warmup: 1/3, 2/3, 3/3 of the peak
    assert rec.lrs[4] == pytest.approx(1e-3) and rec.lrs[5] == pytest.approx(1e-3)  # switch: decay starts at its peak
    assert rec.lrs[8] == pytest.approx(1e-4)  # the last batch trains at final_lr
    assert set(rec.initial_lrs.values()) == {1e-3}  # weight decay is against the phase LR


def reference_cfg(stable_batches=2, decay_batches=1):
    cfg = tiny_cfg(stable_batches=stable_batches, decay_batches=decay_batches, save="100ba")
    cfg.model = dataclasses.replace(cfg.model, attn_implementation="flash_attention_2", flash_attention_kernel="reference")
    return cfg


def test_flash_attention_2_path_trains_with_composer_and_exports(shards, tiny_tokenizer, tmp_path):
    """CLM then MLM batches through Composer on the FA2 path (reference kernel): the same losses
    as SDPA; the export reloads (with SDPA) and gives the trained model's logits."""
    fa2_rec, sdpa_rec = StepLR(), StepLR()
    model = run(reference_cfg(), shards, tiny_tokenizer, tmp_path / "fa2", fa2_rec)
    assert model.model.config._attn_implementation == "flash_attention_2"
    sdpa_cfg = tiny_cfg(stable_batches=2, decay_batches=1, save="100ba")
    run(sdpa_cfg, shards, tiny_tokenizer, tmp_path / "sdpa", sdpa_rec)
    assert sorted(fa2_rec.losses) == [0, 1, 2]
    for batch, loss in fa2_rec.losses.items():
        assert loss == pytest.approx(sdpa_rec.losses[batch], rel=1e-5), batch

    from transformers import AutoModelForMaskedLM

    hf = model.model.eval()
    out = export_hf(hf, tiny_tokenizer, tmp_path / "hf")
    reloaded = AutoModelForMaskedLM.from_pretrained(out, local_files_only=True).eval()
    assert reloaded.config._attn_implementation == "sdpa"
    model.switch.set_mode("bidirectional")
    enc = tiny_tokenizer(["Le patient présente une [MASK] persistante.", "Fièvre."], padding=True, return_tensors="pt")
    with torch.no_grad():
        a, b = reloaded(**enc).logits, hf(**enc).logits
    real = enc["attention_mask"].bool()
    torch.testing.assert_close(a[real], b[real], rtol=1e-5, atol=1e-5)


def test_a_trained_tokenizer_saves_the_same_files_as_when_a_resumed_run_loads_it(tmp_path):
    """A re-export after a requeue or relaunch must not change the model's fingerprint through its tokenizer."""
    from mcbio.model.fingerprint import tokenizer_fingerprint
    from mcbio.train.pretrain import prepare_tokenizer

    model_cfg = ModelConfig(vocab_size=400, max_position_embeddings=256)
    data_cfg = PretrainDataConfig()
    fresh = prepare_tokenizer(model_cfg, data_cfg, tmp_path)  # trains and caches it
    resumed = prepare_tokenizer(model_cfg, data_cfg, tmp_path)  # reads the cache
    fresh.save_pretrained(tmp_path / "first_export")
    resumed.save_pretrained(tmp_path / "re_export")
    assert tokenizer_fingerprint(tmp_path / "first_export") == tokenizer_fingerprint(tmp_path / "re_export")
