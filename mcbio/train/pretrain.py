"""Continued pretraining stage: tokenizer -> packed sequences -> Composer fit over all phases."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import Iterator

import torch
from composer import Trainer
from composer.utils import dist
from torch.utils.data import DataLoader
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from mcbio.config.schema import PretrainRunConfig
from mcbio.data.corpus import iter_documents
from mcbio.data.packing import BoundaryTokens
from mcbio.data.shards import PackedShards, PackedStream, write_packed_shards
from mcbio.data.tokenizer import load_tokenizer, train_bpe_tokenizer
from mcbio.model.build import build_masked_lm
from mcbio.tracking import composer_wandb_logger, configure_wandb_env
from mcbio.train.composer_model import EncoderPretrainingModel
from mcbio.train.batching import BatchPlan, plan_batch
from mcbio.train.optim import build_optimizer
from mcbio.train.phases import PhasedLRSchedule, PhaseSwitch, plan_phases
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


def prepare_tokenizer(cfg: PretrainRunConfig, out_dir: Path) -> PreTrainedTokenizerBase:
    """``model.tokenizer``, else ``model.init_from``'s, else a BPE trained on the corpus (cached)."""
    if cfg.model.tokenizer:
        return load_tokenizer(cfg.model.tokenizer)
    if cfg.model.init_from:
        return load_tokenizer(cfg.model.init_from)
    cached = out_dir / "tokenizer"
    if (cached / "tokenizer.json").is_file():
        return load_tokenizer(cached)
    texts = (d.text for d in iter_documents(cfg.data.corpus, cfg.data.tokenizer_train_max_documents))
    tokenizer = train_bpe_tokenizer(texts, vocab_size=cfg.model.vocab_size,
                                    model_max_length=cfg.model.max_position_embeddings)
    tmp = out_dir / "tokenizer.tmp"
    tokenizer.save_pretrained(tmp)
    tmp.replace(cached) if not cached.exists() else shutil.rmtree(tmp)
    log.info("trained a %d-token BPE tokenizer -> %s", len(tokenizer), cached)
    return tokenizer


def prepare_packed_data(cfg: PretrainRunConfig, tokenizer: PreTrainedTokenizerBase, out_dir: Path) -> PackedShards:
    """``data.shards``, else tokenise and pack ``data.corpus`` once into shards under the run (cached)."""
    if cfg.data.shards:
        shards = PackedShards(cfg.data.shards)
        if shards.seq_len != cfg.data.seq_len:
            raise ValueError(f"data.shards: {cfg.data.shards} holds {shards.seq_len}-token rows but data.seq_len={cfg.data.seq_len}")
        return shards
    cached = out_dir / "data" / f"packed-{cfg.data.seq_len}"
    if (cached / "index.json").is_file():
        return PackedShards(cached)
    docs = iter_documents(cfg.data.corpus, cfg.data.max_documents)
    token_lists = (tokenizer(d.text, add_special_tokens=True, verbose=False)["input_ids"] for d in docs)
    stats = write_packed_shards(
        token_lists, cached, cfg.data.seq_len, tokenizer.pad_token_id,
        sequences_per_shard=cfg.data.sequences_per_shard,
        boundaries=BoundaryTokens.from_tokenizer(tokenizer) if cfg.data.max_split_padding else None,
        max_split_padding=cfg.data.max_split_padding, overwrite=True,
    )
    log.info("packed %d documents into %d sequences of %d tokens (padding %.3f %%; cuts: %d paragraph, %d sentence, "
             "%d mid-sentence; %d documents moved whole) -> %s", stats["documents"], stats["sequences"], cfg.data.seq_len,
             100 * stats["padding_fraction"], stats["cuts_at_paragraph"], stats["cuts_at_sentence"],
             stats["cuts_mid_sentence"], stats["documents_moved"], cached)
    return PackedShards(cached)


def batch_plan(cfg: PretrainRunConfig, world_size: int) -> BatchPlan:
    plan = plan_batch(cfg.train.global_batch_size, cfg.train.device_microbatch_size, world_size)
    log.info("batch: %s", plan.describe(cfg.data.seq_len))
    return plan


def build_trainer(cfg: PretrainRunConfig, model: EncoderPretrainingModel, shards: PackedShards, out_dir: Path) -> Trainer:
    train = cfg.train
    world = dist.get_world_size()
    expected = cfg.resources.nodes * cfg.resources.gpus_per_node
    if expected and torch.cuda.is_available() and world != expected:
        raise RuntimeError(f"{world} ranks running but resources ask for {expected} GPUs (nodes x gpus_per_node)")
    bplan = batch_plan(cfg, world)
    stream = PackedStream(shards, train.global_batch_size, train.data_seed, dist.get_global_rank(), world)
    loader = DataLoader(stream, batch_size=bplan.per_device, num_workers=cfg.data.num_workers,
                        persistent_workers=cfg.data.num_workers > 0, pin_memory=torch.cuda.is_available())

    tokens_per_batch = train.global_batch_size * cfg.data.seq_len
    plan = plan_phases(train.phases, tokens_per_batch)
    total_batches = plan[-1].end_batch
    optimizer = build_optimizer(model, train.optimizer)
    on_gpu = torch.cuda.is_available()
    callbacks: list = [PhaseSwitch(plan)]
    if world > 1 and train.parallelism != "fsdp":  # FSDP ranks hold different shards by design
        callbacks.append(ReplicaConsistency(out_dir / "replicas"))
    loggers = []
    if configure_wandb_env(cfg, out_dir):
        loggers.append(composer_wandb_logger(cfg, out_dir, "pretrain"))
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
        schedulers=[PhasedLRSchedule(plan, train.optimizer.lr)],
        step_schedulers_every_batch=True,
        callbacks=callbacks,
        loggers=loggers,
        run_name=cfg.name,
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


def pretrain(cfg: PretrainRunConfig, out_dir: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, EncoderPretrainingModel]:
    out_dir.mkdir(parents=True, exist_ok=True)
    # The process group is formed here rather than by the Trainer (which then reuses it),
    # so that the ranks of a multi-task job can wait for rank 0's data preparation.
    dist.initialize_dist(training_device(), timeout=PROCESS_GROUP_TIMEOUT_S)
    with rank_zero_first():
        tokenizer = prepare_tokenizer(cfg, out_dir)
        shards = prepare_packed_data(cfg, tokenizer, out_dir)
    hf_model = build_masked_lm(cfg.model, tokenizer, cfg.train.seed)
    model = EncoderPretrainingModel(hf_model, tokenizer, cfg.train.data_seed, cfg.model.causal_local_window, cfg.model.document_masking)
    trainer = build_trainer(cfg, model, shards, out_dir)
    # A requeued or re-launched run whose checkpoint already reached max_duration has
    # nothing left to train (Composer refuses such a fit); its weights are loaded.
    if trainer.state.timestamp < trainer.state.max_duration:
        trainer.fit()
    else:
        log.info("training already complete at %s: nothing to resume", trainer.state.timestamp.batch)
    trainer.close()
    return hf_model, tokenizer, model
