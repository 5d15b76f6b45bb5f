"""Test-set length statistics (Table 6): how many tokens each example takes per tokenizer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from mcbio.results.latex import booktabs_table, fmt


@dataclass(frozen=True)
class LengthStats:
    task: str
    tokenizer: str
    n: int
    mean: float
    median: float
    p95: float
    max: int
    share_over: float  # share of examples longer than the threshold
    threshold: int


def length_stats(lengths: Sequence[int], task: str, tokenizer: str, threshold: int = 512) -> LengthStats:
    """Mean, median, 95th percentile (linear interpolation), max, and share strictly over ``threshold``."""
    if not lengths:
        raise ValueError(f"length statistics: task '{task}' has no example")
    arr = np.asarray(lengths, dtype=float)
    return LengthStats(task, tokenizer, len(arr), float(arr.mean()), float(np.median(arr)),
                       float(np.percentile(arr, 95)), int(arr.max()), float((arr > threshold).mean()), threshold)


def task_texts(task_name: str, split: str, shared_data: str | None, tasks: dict | None = None) -> list[str]:
    """The texts of one split of a task, registered or declared in ``tasks`` (one per example; NER
    tokens joined by spaces)."""
    from mcbio.evaluate.run import read_split
    from mcbio.evaluate.tasks import get_task

    examples = read_split(get_task(task_name, tasks), split, shared_data)
    return [" ".join(first) if isinstance(first, list) else str(first) for first, _ in examples]


def task_documents(task_name: str, split: str, shared_data: str | None, tasks: dict | None = None) -> list[str]:
    """One text per *document* of a split, as the paper's Table 6 counts them.

    BRAT tasks (QUAERO) are read per document (each ``.txt`` file of the split folder, whole,
    though fine-tuning cuts EMEA into one sample per line): QUAERO EMEA test has 15
    documents, MEDLINE test 833. Other tasks are already one example per document.
    """
    from mcbio.evaluate.tasks import get_task

    task = get_task(task_name, tasks)
    if task.format == "brat":
        folder = task.path(split, shared_data)
        texts = [t.read_text(encoding="utf-8") for t in sorted(folder.glob("*.txt"))]
        if not texts:
            raise ValueError(f"task '{task_name}': no .txt document in {folder}")
        return texts
    return task_texts(task_name, split, shared_data, tasks)


def token_lengths(texts: Iterable[str], tokenizer, special_tokens: bool = False) -> list[int]:
    """Tokens per text, no truncation; without special tokens by default (the paper's Table 6)."""
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=special_tokens, truncation=False,
                                          verbose=False)["input_ids"]]


def lengths_table(stats: Sequence[LengthStats], caption: str, label: str, decimal_comma: bool = False) -> str:
    threshold = stats[0].threshold if stats else 512
    rows = [(f"{s.task} / {s.tokenizer}", [str(s.n), fmt(s.mean, 1, decimal_comma), fmt(s.median, 1, decimal_comma),
                                          fmt(s.p95, 1, decimal_comma), str(s.max), fmt(100 * s.share_over, 1, decimal_comma)])
            for s in stats]
    return booktabs_table(["Task / tokenizer", "N", "Mean", "Median", "p95", "Max", f"> {threshold} (%)"], rows,
                          caption, label, bold_best=None)
