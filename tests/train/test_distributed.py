"""Two-rank DDP pretraining on CPU: one submitit task per rank, Composer over gloo.

The real smoke experiment (both phases, checkpoints, export) with a shrunken budget,
through submitit's local executor exactly as a multi-GPU job runs (one task per GPU).
"""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from mcbio.cluster import launch
from mcbio.config import PretrainRunConfig, load_config
from mcbio.pipelines.pretrain import plan_pretraining
from mcbio.train.replicas import state_digest
from tests.conftest import REPO

CONFIG = REPO / "experiments" / "base_clm_detour" / "config.yaml"
RANKS = 2
# 16-sequence global batch x 128 tokens = 2,048 tokens/batch: CLM phase 4 batches, MLM phase 2.
BUDGET = ["train.phases.stable.tokens=8192", "train.phases.stable.warmup_tokens=2048",
          "train.phases.decay.tokens=4096", "train.checkpoint.save_interval=2ba"]
STABLE_BATCHES, TOTAL_BATCHES = 4, 6


def two_rank_args(out_dir) -> list[str]:
    return ["preset=smoke", "cluster=local", f"resources.tasks_per_node={RANKS}", "stages=[pretrain]",
            "tracking.wandb=false", f"out_dir={out_dir}", f"evaluation.results_dir={out_dir.parent / 'results'}",
            *BUDGET]


def checkpoint_state(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)["state"]


@pytest.mark.slow
def test_two_ranks_train_in_sync_through_both_phases(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # one thread per rank: the 2 ranks share 2 cores
    monkeypatch.delenv("MASTER_PORT", raising=False)
    out = tmp_path / "run"
    cfg = load_config(PretrainRunConfig, CONFIG, two_rank_args(out))
    assert launch(PretrainRunConfig, CONFIG, plan_pretraining, two_rank_args(out)) == 0
    folder = out / "submitit" / "pretrain"
    # submitit's files, one per task: ("success", the task's return value) and its log.
    summaries = [pickle.loads(next(folder.glob(f"*_{rank}_result.pkl")).read_bytes())[1] for rank in range(RANKS)]
    logs = [next(folder.glob(f"*_{rank}_log.err")).read_text() for rank in range(RANKS)]

    # Both ranks ran, each with half of the global batch.
    assert len(summaries) == RANKS
    per_rank = cfg.train.global_batch_size // RANKS
    for rank, log in enumerate(logs):
        assert f"{RANKS} ranks x {per_rank} sequences/rank" in log, f"rank {rank} log:\n{log[-3000:]}"
        assert f"phase switch at batch {STABLE_BATCHES}: stable -> decay" in log, f"rank {rank}"
    # Rank 0 built the tokenizer and the packed data; rank 1 waited and reused them.
    assert "trained a" in logs[0] and "trained a" not in logs[1]
    assert "documents into" in logs[0] and "documents into" not in logs[1]

    # Both phases completed: a (single, rank-0) checkpoint at the final batch.
    ckpts = out / "checkpoints"
    final = checkpoint_state(ckpts / "latest-rank0.pt")
    assert final["timestamp"]["Timestamp"]["batch"] == TOTAL_BATCHES
    assert (ckpts / f"ep0-ba{TOTAL_BATCHES}-rank0.pt").is_file()

    # DDP kept the replicas bit-identical, and they are the weights rank 0 checkpointed.
    records = [json.loads((out / "replicas" / f"rank-{rank}.json").read_text()) for rank in range(RANKS)]
    assert [r["rank"] for r in records] == list(range(RANKS))
    assert all(r["process_group_size"] == RANKS and r["batch"] == TOTAL_BATCHES for r in records)
    assert records[0]["digest"] == records[1]["digest"]
    assert records[0]["digest"] == state_digest(final["model"])
    assert state_digest(checkpoint_state(ckpts / "ep0-ba2-rank0.pt")["model"]) != records[0]["digest"]

    # Only rank 0 exported.
    assert summaries[0]["hf"] == str(out / "hf") and (out / "hf" / "model.safetensors").is_file()
    assert "hf" not in summaries[1]
