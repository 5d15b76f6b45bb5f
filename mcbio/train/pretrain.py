"""Continued pretraining stage: tokenizer -> packed sequences -> Composer fit over all phases."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import torch
from composer import Trainer
from composer.utils import dist
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from mcbio.config.schema import PretrainRunConfig
from mcbio.data.corpus import iter_documents
from mcbio.data.packing import PackedDataset, PackedSequences, pack_documents
from mcbio.data.tokenizer import load_tokenizer, train_bpe_tokenizer
from mcbio.model.build import build_masked_lm
from mcbio.tracking import composer_wandb_logger, configure_wandb_env
from mcbio.train.composer_model import EncoderPretrainingModel
from mcbio.train.optim import build_optimizer
from mcbio.train.phases import PhasedLRSchedule, PhaseSwitch, plan_phases

log = logging.getLogger(__name__)


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
    tokenizer = train_bpe_tokenizer(texts, vocab_size=cfg.model.vocab_size)
    tmp = out_dir / "tokenizer.tmp"
    tokenizer.save_pretrained(tmp)
    tmp.replace(cached) if not cached.exists() else shutil.rmtree(tmp)
    log.info("trained a %d-token BPE tokenizer -> %s", len(tokenizer), cached)
    return tokenizer


def prepare_packed_data(cfg: PretrainRunConfig, tokenizer: PreTrainedTokenizerBase, out_dir: Path) -> PackedSequences:
    """Packed shards from ``data.shards``, else tokenise and pack ``data.corpus`` once (cached)."""
    if cfg.data.shards:
        return PackedSequences.load(cfg.data.shards)
    cached = out_dir / "data" / f"packed-{cfg.data.seq_len}"
    if (cached / "document_ids.npy").is_file():
        return PackedSequences.load(cached)
    docs = iter_documents(cfg.data.corpus, cfg.data.max_documents)
    token_lists = (tokenizer(d.text, add_special_tokens=True, verbose=False)["input_ids"] for d in tqdm(docs, desc="tokenising", unit="doc", mininterval=2))
    packed = pack_documents(token_lists, cfg.data.seq_len, tokenizer.pad_token_id)
    tmp = cached.with_suffix(".tmp")
    packed.save(tmp)
    tmp.replace(cached)
    log.info("packed %d sequences of %d tokens (padding %.4f %%) -> %s",
             len(packed.input_ids), cfg.data.seq_len, 100 * packed.padding_fraction, cached)
    return PackedSequences.load(cached)


def build_trainer(cfg: PretrainRunConfig, model: EncoderPretrainingModel, packed: PackedSequences, out_dir: Path) -> Trainer:
    world = dist.get_world_size()
    train = cfg.train
    if train.global_batch_size % world:
        raise ValueError(f"train.global_batch_size={train.global_batch_size} is not divisible by {world} ranks")
    per_device = train.global_batch_size // world
    dataset = PackedDataset(packed)
    if len(dataset) < train.global_batch_size:
        raise ValueError(
            f"only {len(dataset)} packed sequences of {cfg.data.seq_len} tokens, fewer than one global batch "
            f"({train.global_batch_size}): use a larger corpus or a smaller train.global_batch_size / data.seq_len"
        )
    sampler = dist.get_sampler(dataset, shuffle=True, drop_last=True, seed=train.data_seed)
    loader = DataLoader(dataset, batch_size=per_device, sampler=sampler, drop_last=True, num_workers=cfg.data.num_workers)

    tokens_per_batch = train.global_batch_size * cfg.data.seq_len
    plan = plan_phases(train.phases, tokens_per_batch)
    total_batches = plan[-1].end_batch
    optimizer = build_optimizer(model, train.optimizer)
    on_gpu = torch.cuda.is_available()
    loggers = []
    if configure_wandb_env(cfg, out_dir):
        loggers.append(composer_wandb_logger(cfg, out_dir, "pretrain"))
    log.info("phases: %s; %d batches of %d tokens", ", ".join(f"{p.name}={p.num_batches}ba" for p in plan), total_batches, tokens_per_batch)
    return Trainer(
        model=model,
        train_dataloader=loader,
        max_duration=f"{total_batches}ba",
        optimizers=optimizer,
        schedulers=[PhasedLRSchedule(plan, train.optimizer.lr)],
        step_schedulers_every_batch=True,
        callbacks=[PhaseSwitch(plan)],
        loggers=loggers,
        run_name=cfg.name,
        save_folder=str(out_dir / "checkpoints"),
        save_interval=train.checkpoint.save_interval,
        save_num_checkpoints_to_keep=train.checkpoint.save_num_checkpoints_to_keep,
        save_overwrite=False,
        autoresume=True,
        device="gpu" if on_gpu else "cpu",
        precision=train.precision if on_gpu else "fp32",
        device_train_microbatch_size=min(train.device_microbatch_size, per_device),
        parallelism_config={"fsdp": {}} if train.parallelism == "fsdp" else None,
        seed=train.seed,
        progress_bar=train.progress_bar,
        log_to_console=not train.progress_bar,
        console_log_interval=train.log_interval,
        python_log_level=os.environ.get("MCBIO_COMPOSER_LOG_LEVEL"),
    )


def pretrain(cfg: PretrainRunConfig, out_dir: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, EncoderPretrainingModel]:
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = prepare_tokenizer(cfg, out_dir)
    packed = prepare_packed_data(cfg, tokenizer, out_dir)
    hf_model = build_masked_lm(cfg.model, tokenizer, cfg.train.seed)
    model = EncoderPretrainingModel(hf_model, tokenizer, cfg.train.data_seed, cfg.model.causal_local_window, cfg.model.document_masking)
    trainer = build_trainer(cfg, model, packed, out_dir)
    trainer.fit()
    trainer.close()
    return hf_model, tokenizer, model
