"""Prompts are text files in ``mcbio/prompts/<name>.txt`` with ``str.format`` placeholders."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

PROMPT_DIR = Path(__file__).resolve().parents[1] / "prompts"


@lru_cache(maxsize=None)
def load_prompt(name: str) -> str:
    path = PROMPT_DIR / f"{name}.txt"
    if not path.is_file():
        available = sorted(p.stem for p in PROMPT_DIR.glob("*.txt"))
        raise FileNotFoundError(
            f"prompt '{name}' not found at {path}. Available prompts: {', '.join(available) or 'none'}"
        )
    return path.read_text(encoding="utf-8")
