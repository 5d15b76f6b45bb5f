"""Checks that DDP kept every rank's copy of the model identical.

DDP averages gradients across ranks, so each rank applies the same update to the same
weights and the replicas stay bit-identical; ranks that trained each on their own (no
process group, a broken gradient hook) drift apart on their different data slices.
At fit end every rank hashes its weights, the digests are all-gathered, each rank writes
its record, and a mismatch fails the run instead of exporting one rank's drifted model.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Mapping

import torch
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

from mcbio.files import write_json_atomic

log = logging.getLogger(__name__)


def state_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over names and raw bytes, in name order: equal iff every tensor is bit-identical.

    Takes a state dict, so a Composer checkpoint's ``state["model"]`` hashes like the live model.
    """
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode("utf-8"))
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class ReplicaConsistency(Callback):
    """At fit end, compare the weight digests of all ranks; write ``<folder>/rank-<r>.json``.

    Meant for DDP only: under FSDP each rank holds a different shard by design.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def fit_end(self, state: State, logger: Logger) -> None:
        model = state.model.module if hasattr(state.model, "module") else state.model
        digest = state_digest(model.state_dict())
        digests = dist.all_gather_object(digest)
        rank = dist.get_global_rank()
        record = {
            "rank": rank,
            "world_size": dist.get_world_size(),
            # The process group actually formed, not just the environment variables.
            "process_group_size": torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1,
            "batch": int(state.timestamp.batch),
            "digest": digest,
            "all_digests": digests,
        }
        write_json_atomic(self.folder / f"rank-{rank}.json", record, indent=1)
        if len(set(digests)) > 1:
            raise RuntimeError(
                f"DDP replicas diverged at batch {record['batch']}: weight digests per rank {digests} "
                f"(records in {self.folder})"
            )
        log.info("DDP replicas identical on %d ranks at batch %d (weights sha256 %s)", len(digests), record["batch"], digest[:16])
