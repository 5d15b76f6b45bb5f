"""Composer's mixed precision as a plain context manager, on any device type.

Composer wraps each micro-batch's forward pass and loss in ``torch.autocast("cuda", dtype)``
for ``amp_bf16`` / ``amp_fp16`` (backward outside), and refuses them on CPU. This does the
same on any device type, so a CPU run (tests, benchmarks, the GPU check's dry run) executes
the paper's precision (``train.precision: amp_bf16``) under CPU autocast and dtype errors
surface without a GPU.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "amp_bf16": torch.bfloat16, "amp_fp16": torch.float16}


def autocast(precision: str, device_type: str) -> ContextManager:
    """The autocast context of ``train.precision`` on ``device_type`` ("cpu", "cuda")."""
    if precision not in AUTOCAST_DTYPES:
        raise ValueError(f"'train.precision'={precision!r}: choose one of {', '.join(AUTOCAST_DTYPES)}")
    dtype = AUTOCAST_DTYPES[precision]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type=device_type, dtype=dtype)
