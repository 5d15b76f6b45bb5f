"""Real French passages for measuring the LLM stages: the heads of E3C clinical case reports.

The LLM tests and ``benchmarks/llm_throughput.py`` annotate the same passages, read by the
curation's own E3C reader from ``<shared_data>/e3c_fr_unlabeled/layer3_journal``.
"""

from __future__ import annotations

from pathlib import Path
from typing import List


def e3c_case_reports(shared_data: str | Path, limit: int | None = None):
    """The journal layer's case reports as datatrove Documents, in the reader's order (a generator)."""
    from mcbio.config.curation import SourceConfig
    from mcbio.data.curation.readers import build_reader

    folder = Path(shared_data) / "e3c_fr_unlabeled" / "layer3_journal"
    if not folder.is_dir():
        raise FileNotFoundError(f"E3C journal layer not found: {folder} (set MCBIO_DATA / paths.shared_data)")
    src = SourceConfig(path=str(folder), format="e3c_json", limit=-1 if limit is None else limit)
    yield from build_reader("journal", src).run()


def e3c_passages(shared_data: str | Path, n: int = 48, min_words: int = 40, max_words: int = 200) -> List[str]:
    """``n`` passages: the first ``max_words`` words of each case report (of >= 60 words), cut at the last
    sentence end that leaves at least ``min_words``."""
    out: List[str] = []
    for doc in e3c_case_reports(shared_data):
        words = doc.text.split()
        if len(words) < 60:
            continue
        head = " ".join(words[:max_words])
        cut = head.rfind(". ")
        out.append(head[: cut + 1] if cut > 0 and len(head[:cut].split()) >= min_words else head)
        if len(out) == n:
            return out
    raise ValueError(f"only {len(out)} passages of >= 60 words in the E3C journal layer ({n} asked)")
