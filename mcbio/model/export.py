"""Hugging Face export: a folder loadable by AutoModelForMaskedLM and the fill-mask pipeline."""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from mcbio.model.fingerprint import write_fingerprint


def export_hf(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: str | Path) -> Path:
    """Save weights, config and tokenizer, then their content fingerprint (``mcbio_fingerprint.json``),
    which every evaluation record of this model carries."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # Exported models load with SDPA so that a machine without flash-attn can use them.
    attn = model.config._attn_implementation
    model.config._attn_implementation = "sdpa"
    try:
        model.save_pretrained(folder, safe_serialization=True)
    finally:
        model.config._attn_implementation = attn
    tokenizer.save_pretrained(folder)
    write_fingerprint(folder)
    return folder
