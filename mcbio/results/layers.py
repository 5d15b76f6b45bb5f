"""Where the detour acts: per-layer weight change and linear CKA between two checkpoints.

Works on Hugging Face folders (the export of each phase): the relative weight change of
layer ``i`` is ``||W_end - W_start||_F / ||W_start||_F`` over all parameters of encoder
layer ``i``; the representation similarity is linear CKA (Kornblith et al., 2019) between
the layer's token representations of the two checkpoints on a fixed French text sample.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import torch
from transformers import AutoModel, AutoTokenizer

LAYER_PARAM = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def _load(path: str | Path):
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"not a Hugging Face model folder (no config.json): {path}")
    return AutoModel.from_pretrained(path).eval()


def layer_weight_change(start: str | Path, end: str | Path) -> list[float]:
    """Relative Frobenius change per encoder layer, from ``start`` to ``end``."""
    s, e = _load(start).state_dict(), _load(end).state_dict()
    num = {}
    den = {}
    for name, w0 in s.items():
        m = LAYER_PARAM.search(name)
        if not m:
            continue
        if name not in e or e[name].shape != w0.shape:
            raise ValueError(f"checkpoints differ in parameter '{name}': {start} vs {end}")
        i = int(m.group(1))
        num[i] = num.get(i, 0.0) + float((e[name].float() - w0.float()).pow(2).sum())
        den[i] = den.get(i, 0.0) + float(w0.float().pow(2).sum())
    if not num:
        raise ValueError(f"no encoder layer parameters (…layers.<i>.…) in {start}")
    return [(num[i] / den[i]) ** 0.5 if den[i] else float("nan") for i in sorted(num)]


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two (n_examples, features) matrices: ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"linear_cka: {x.shape[0]} vs {y.shape[0]} examples")
    x = (x - x.mean(0, keepdim=True)).double()
    y = (y - y.mean(0, keepdim=True)).double()
    num = torch.linalg.matrix_norm(y.T @ x) ** 2
    den = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(num / den) if den > 0 else float("nan")


@torch.no_grad()
def layer_representations(model_dir: str | Path, texts: Sequence[str], max_length: int, tokenizer_dir: str | Path | None = None) -> list[torch.Tensor]:
    """Per encoder layer: the (tokens, hidden) matrix of all non-padding tokens of ``texts``."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or model_dir)
    model = _load(model_dir)
    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt",
                      return_token_type_ids=False)
    out = model(**batch, output_hidden_states=True)
    mask = batch["attention_mask"].bool()
    # hidden_states[0] is the embedding output; layer i's output is hidden_states[i + 1].
    return [h[mask] for h in out.hidden_states[1:]]


def layer_cka(start: str | Path, end: str | Path, texts: Sequence[str], max_length: int = 256) -> list[float]:
    """Linear CKA per layer between ``start`` and ``end`` on the same tokens (start's tokenizer)."""
    a = layer_representations(start, texts, max_length)
    b = layer_representations(end, texts, max_length, tokenizer_dir=start)
    if len(a) != len(b):
        raise ValueError(f"{start} has {len(a)} layers, {end} has {len(b)}")
    return [linear_cka(x, y) for x, y in zip(a, b)]
