"""Continued pretraining stage: tokenizer -> packed sequences -> Composer fit over all phases.

The entry, :func:`pretrain`, takes what training needs and nothing else: the model, data and
train sections, the run directory, the world size the job expects and the Composer loggers
its caller built (W&B or none). Scheduling (Slurm resources) and tracking settings stay
with the caller (mcbio.pipelines.pretrain).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator, Sequence

import torch
from composer import Trainer
from composer.loggers import LoggerDestination
from composer.utils import dist
from torch.utils.data import DataLoader
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from mcbio.config.batching import BatchPlan, plan_batch
from mcbio.config.schema import ModelConfig, PretrainDataConfig, TrainConfig
from mcbio.data.corpus import iter_documents
from mcbio.data.packing import BoundaryTokens
from mcbio.data.shards import PackedShards, PackedStream, write_packed_shards
from mcbio.files import atomic_dir
from mcbio.data.tokenizer import load_tokenizer, train_bpe_tokenizer
from mcbio.model.build import build_masked_lm
from mcbio.train.checkpoints import repair_checkpoints
from mcbio.train.composer_model import EncoderPretrainingModel
from mcbio.train.optim import build_optimizer
from mcbio.train.phases import BatchLR, PhaseSwitch, plan_phases
from mcbio.train.replicas import ReplicaConsistency

log = logging.getLogger(__name__)

# torch's own default; Composer's Trainer would use 300 s, which can cut off the ranks
# waiting while rank 0 trains the tokenizer or packs the corpus (see rank_zero_first).
PROCESS_GROUP_TIMEOUT_S = 1800.0


def training_device() -> str:
    return "gpu" if torch.cuda.is_available() else "cpu"


@contextlib.contextmanager
def rank_zero_first() -> Iterator[None]:
    """Global rank 0 runs the block, then the other ranks (which find its cached outputs).

    Every rank of a multi-task job shares the run directory (one file system across
    nodes), so the tokenizer and the packed data are built once, by rank 0, instead of
    by all ranks at once into the same folders. Needs the process group (see pretrain).
    """
    if dist.get_world_size() == 1:
        yield
        return
    first = dist.get_global_rank() == 0
    if not first:
        dist.barrier()
    yield
    if first:
        dist.barrier()


def prepare_tokenizer(model_cfg: ModelConfig, data_cfg: PretrainDataConfig, out_dir: Path) -> PreTrainedTokenizerBase:
    """``model.tokenizer``, else ``model.init_from``'s, else a BPE trained on the corpus (cached)."""
    if model_cfg.tokenizer:
        return load_tokenizer(model_cfg.tokenizer)
    if model_cfg.init_from:
        return load_tokenizer(model_cfg.init_from)
    cached = out_dir / "tokenizer"
    if (cached / "tokenizer.json").is_file():
        return load_tokenizer(cached)
    texts = (d.text for d in iter_documents(data_cfg.corpus, data_cfg.tokenizer_train_max_documents))
    tokenizer = train_bpe_tokenizer(texts, vocab_size=model_cfg.vocab_size,
                                    model_max_length=model_cfg.max_position_embeddings)
    with atomic_dir(cached) as tmp:
        tokenizer.save_pretrained(tmp)
    log.info("trained a %d-token BPE tokenizer -> %s", len(tokenizer), cached)
    # The saved one, as a resumed run gets it: a tokenizer fresh from training writes its special
    # tokens map in another form, which would change the export's fingerprint on a mere re-export.
    return load_tokenizer(cached)


def packed_data_dir(data_cfg: PretrainDataConfig, out_dir: Path) -> Path:
    """The shards a run trains on: ``data.shards``, else the run's own packing of ``data.corpus``."""
    return Path(data_cfg.shards) if data_cfg.shards else out_dir / "data" / f"packed-{data_cfg.seq_len}"


def prepare_packed_data(data_cfg: PretrainDataConfig, tokenizer: PreTrainedTokenizerBase, out_dir: Path) -> PackedShards:
    """``data.shards``, else tokenise and pack ``data.corpus`` once into shards under the run (cached)."""
    if data_cfg.shards:
        shards = PackedShards(data_cfg.shards)
        if shards.seq_len != data_cfg.seq_len:
            raise ValueError(f"data.shards: {data_cfg.shards} holds {shards.seq_len}-token rows but data.seq_len={data_cfg.seq_len}")
        return shards
    cached = packed_data_dir(data_cfg, out_dir)
    if (cached / "index.json").is_file():
        return PackedShards(cached)
    docs = iter_documents(data_cfg.corpus, data_cfg.max_documents)
    token_lists = (tokenizer(d.text, add_special_tokens=True, verbose=False)["input_ids"] for d in docs)
    stats = write_packed_shards(
        token_lists, cached, data_cfg.seq_len, tokenizer.pad_token_id,
        sequences_per_shard=data_cfg.sequences_per_shard,
        boundaries=BoundaryTokens.from_tokenizer(tokenizer) if data_cfg.max_split_padding else None,
        max_split_padding=data_cfg.max_split_padding, overwrite=True,
    )
    log.info("packed %d documents into %d sequences of %d tokens (padding %.3f %%; cuts: %d paragraph, %d sentence, "
             "%d mid-sentence; %d documents moved whole) -> %s", stats["documents"], stats["sequences"], data_cfg.seq_len,
             100 * stats["padding_fraction"], stats["cuts_at_paragraph"], stats["cuts_at_sentence"],
             stats["cuts_mid_sentence"], stats["documents_moved"], cached)
    return PackedShards(cached)


def batch_plan(train_cfg: TrainConfig, seq_len: int, world_size: int) -> BatchPlan:
    plan = plan_batch(train_cfg.global_batch_size, train_cfg.device_microbatch_size, world_size)
    log.info("batch: %s", plan.describe(seq_len))
    return plan


def build_trainer(data_cfg: PretrainDataConfig, train_cfg: TrainConfig, model: EncoderPretrainingModel, shards: PackedShards,
                  out_dir: Path, *, run_name: str, expected_world_size: int = 0,
                  loggers: Sequence[LoggerDestination] = ()) -> Trainer:
    """``expected_world_size``: the GPUs the job asked for (0 = no check); ``loggers``: built by the caller."""
    train = train_cfg
    world = dist.get_world_size()
    if expected_world_size and torch.cuda.is_available() and world != expected_world_size:
        raise RuntimeError(f"{world} ranks running but the job asked for {expected_world_size} GPUs (nodes x gpus_per_node)")
    bplan = batch_plan(train, data_cfg.seq_len, world)
    stream = PackedStream(shards, train.global_batch_size, train.data_seed, dist.get_global_rank(), world)
    loader = DataLoader(stream, batch_size=bplan.per_device, num_workers=data_cfg.num_workers,
                        persistent_workers=data_cfg.num_workers > 0, pin_memory=torch.cuda.is_available())

    tokens_per_batch = train.global_batch_size * data_cfg.seq_len
    plan = plan_phases(train.phases, tokens_per_batch)
    total_batches = plan[-1].end_batch
    optimizer = build_optimizer(model, train.optimizer, plan[0].config.lr)
    on_gpu = torch.cuda.is_available()
    callbacks: list = [PhaseSwitch(plan), BatchLR(plan)]
    if world > 1 and train.parallelism != "fsdp":  # FSDP ranks hold different shards by design
        callbacks.append(ReplicaConsistency(out_dir / "replicas"))
    log.info("phases: %s; %d batches of %d tokens; %.2f passes over %d packed sequences",
             ", ".join(f"{p.name}={p.num_batches}ba" for p in plan), total_batches, tokens_per_batch,
             stream.passes(total_batches), len(shards))
    parallelism = None
    if train.parallelism == "fsdp":
        parallelism = {"fsdp": {"sharding_strategy": "FULL_SHARD", "mixed_precision": "DEFAULT", "use_orig_params": True}}
    return Trainer(
        model=model,
        train_dataloader=loader,
        max_duration=f"{total_batches}ba",
        optimizers=optimizer,
        # No Composer scheduler: BatchLR sets each batch's LR (see mcbio.train.phases).
        schedulers=None,
        callbacks=callbacks,
        loggers=list(loggers),
        run_name=run_name,
        save_folder=str(out_dir / "checkpoints"),
        save_interval=train.checkpoint.save_interval,
        save_num_checkpoints_to_keep=train.checkpoint.save_num_checkpoints_to_keep,
        save_overwrite=False,
        autoresume=True,
        device=training_device(),
        precision=train.precision if on_gpu else "fp32",
        device_train_microbatch_size=bplan.microbatch,
        parallelism_config=parallelism,
        seed=train.seed,
        progress_bar=train.progress_bar,
        log_to_console=not train.progress_bar,
        console_log_interval=train.log_interval,
        python_log_level=os.environ.get("MCBIO_COMPOSER_LOG_LEVEL"),
    )


def pretrain(model_cfg: ModelConfig, data_cfg: PretrainDataConfig, train_cfg: TrainConfig, out_dir: Path, *,
             run_name: str, expected_world_size: int = 0, loggers: Sequence[LoggerDestination] = (),
             ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, EncoderPretrainingModel, int, list[str]]:
    """Train every phase of ``train_cfg`` in ``out_dir`` (resuming from its checkpoints).

    ``run_name``: Composer's run name (checkpoint autoresume needs one); ``expected_world_size``:
    the GPUs the job asked for, checked against the ranks running (0 = no check);
    ``loggers``: Composer logger destinations built by the caller. Also returns the batch the
    run resumed at (0 for a fresh start) and the checkpoint repairs made before resuming (rank 0; see
    :func:`mcbio.train.checkpoints.repair_checkpoints`).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    # The process group is formed here rather than by the Trainer (which then reuses it),
    # so that the ranks of a multi-task job can wait for rank 0's data preparation.
    dist.initialize_dist(training_device(), timeout=PROCESS_GROUP_TIMEOUT_S)
    repairs: list[str] = []
    with rank_zero_first():
        if dist.get_global_rank() == 0:
            repairs = repair_checkpoints(out_dir / "checkpoints")
        tokenizer = prepare_tokenizer(model_cfg, data_cfg, out_dir)
        shards = prepare_packed_data(data_cfg, tokenizer, out_dir)
    hf_model = build_masked_lm(model_cfg, tokenizer, train_cfg.seed)
    model = EncoderPretrainingModel(hf_model, tokenizer, train_cfg.data_seed, model_cfg.causal_local_window,
                                    model_cfg.document_masking)
    trainer = build_trainer(data_cfg, train_cfg, model, shards, out_dir, run_name=run_name,
                            expected_world_size=expected_world_size, loggers=loggers)
    # A requeued or re-launched run whose checkpoint already reached max_duration has
    # nothing left to train (Composer refuses such a fit); its weights are loaded.
    resumed_at = int(trainer.state.timestamp.batch)
    if resumed_at:
        log.info("resumed from a checkpoint at batch %d", resumed_at)
    if trainer.state.timestamp < trainer.state.max_duration:
        trainer.fit()
    else:
        log.info("training already complete at %s: nothing to resume", trainer.state.timestamp.batch)
    trainer.close()
    return hf_model, tokenizer, model, resumed_at, repairs
