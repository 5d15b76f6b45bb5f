"""Test-split decontamination: drop pretraining documents sharing a word n-gram with an evaluation split.

A document is contaminated when one of its n consecutive words (lower-cased ``\\w+`` tokens,
13 by default as in GPT-3's study) also occurs in a test example. :class:`OverlapFilter`
runs first in the ``select`` stage on every group, curated or not (EMEA and E3C, which
skip curation, are the groups most likely to hold test text). Besides the pretraining-side
counts it records the test-side view: which test examples some pretraining document hit,
one JSON report per rank, merged by :func:`merge_overlap_reports` into ``curation_stats.json``.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter

from mcbio.data.curation.steps import _StepCounts
from mcbio.data.curation.text import TokenCounter

_TOKEN = re.compile(r"\w+")  # str patterns are Unicode: "hépatique" is one word
# One (task, example) packed in an int: a Python int per n-gram instead of a set of tuples.
_EXAMPLE_BITS = 32
DOCUMENT_COUNTS = ("in", "dropped", "tokens_in", "tokens_dropped")


def word_ngrams(text: str, n: int) -> Set[int]:
    """The stable 64-bit hashes of every ``n`` consecutive words of ``text`` (empty under ``n`` words).

    NFC first, so that a decomposed accent (``e`` + U+0301) stays inside its word; blake2b,
    not ``hash()``, whose salt differs per process: ranks and the test index must agree.
    """
    tokens = _TOKEN.findall(unicodedata.normalize("NFC", text).lower())
    return {int.from_bytes(hashlib.blake2b(" ".join(tokens[i:i + n]).encode("utf-8"), digest_size=8).digest(), "big")
            for i in range(len(tokens) - n + 1)}


def split_texts(task_name: str, split: str, shared_data: Optional[str],
                declared_tasks: Optional[Mapping] = None) -> List[str]:
    """One text per example of a task's split; BRAT tasks (QUAERO) one per ``.txt`` document."""
    from mcbio.results.lengths import task_documents

    return task_documents(task_name, split, shared_data, dict(declared_tasks) if declared_tasks else None)


class TestSplitIndex:
    """n-gram hash -> the (task, example index) pairs whose text holds it."""

    __test__ = False  # not a pytest class, despite its name

    def __init__(self, texts: Mapping[str, Sequence[str]], ngram: int = 13) -> None:
        self.ngram = ngram
        self.tasks: List[str] = list(texts)
        self.sizes: Dict[str, int] = {t: len(v) for t, v in texts.items()}
        # Value: one packed example (the common case), or a frozenset of them.
        self._table: Dict[int, int | frozenset] = {}
        for t, task in enumerate(self.tasks):
            for i, text in enumerate(texts[task]):
                packed = (t << _EXAMPLE_BITS) | i
                for h in word_ngrams(text, ngram):
                    old = self._table.get(h)
                    if old is None:
                        self._table[h] = packed
                    elif old != packed:
                        self._table[h] = (old if isinstance(old, frozenset) else frozenset((old,))) | {packed}

    @classmethod
    def from_tasks(cls, task_names: Iterable[str], split: str, shared_data: Optional[str], ngram: int = 13,
                   declared_tasks: Optional[Mapping] = None) -> "TestSplitIndex":
        return cls({name: split_texts(name, split, shared_data, declared_tasks) for name in task_names}, ngram)

    def __len__(self) -> int:
        return len(self._table)

    def hits(self, text: str) -> Dict[str, Set[int]]:
        """task -> indices of its examples sharing at least one n-gram with ``text`` (hit tasks only)."""
        out: Dict[str, Set[int]] = defaultdict(set)
        mask = (1 << _EXAMPLE_BITS) - 1
        for h in word_ngrams(text, self.ngram):
            found = self._table.get(h)
            if found is None:
                continue
            for packed in (found if isinstance(found, frozenset) else (found,)):
                out[self.tasks[packed >> _EXAMPLE_BITS]].add(packed & mask)
        return dict(out)


class OverlapFilter(_StepCounts, BaseFilter):
    """Drops every document (curated or not) sharing an n-gram with a task's split; reason ``overlap``.

    The index is built in the worker on first use from (tasks, split, shared_data, ngram)
    and left out of the pickle, so that datatrove ships a few strings, not the table;
    tests pass a ready ``index`` instead. With ``report_dir``, each rank writes
    ``<report_dir>/<rank:05d>.json`` (the hit test examples and per-group counts).
    """

    name = "overlap"

    def __init__(self, tasks: Sequence[str] = (), split: str = "test", shared_data: Optional[str] = None,
                 ngram: int = 13, counter: Optional[TokenCounter] = None,
                 exclusion_writer: Optional[DiskWriter] = None, report_dir: Optional[str] = None,
                 declared_tasks: Optional[Mapping] = None, index: Optional[TestSplitIndex] = None) -> None:
        super().__init__(exclusion_writer)
        self.counter = counter or TokenCounter()
        self.tasks, self.split, self.shared_data, self.ngram = list(tasks), split, shared_data, ngram
        self.declared_tasks = dict(declared_tasks) if declared_tasks else None
        self.report_dir = report_dir
        self._given_index = index
        self._built_index: Optional[TestSplitIndex] = None
        self._reset()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_built_index"] = None
        return state

    @property
    def index(self) -> TestSplitIndex:
        if self._given_index is not None:
            return self._given_index
        if self._built_index is None:
            self._built_index = TestSplitIndex.from_tasks(self.tasks, self.split, self.shared_data, self.ngram,
                                                          self.declared_tasks)
        return self._built_index

    def _reset(self) -> None:
        self._examples_hit: Dict[str, Set[int]] = defaultdict(set)
        self._documents: Dict[str, Dict[str, int]] = {}  # plain dicts: a lambda default would not pickle
        self._dropped_by: Dict[str, int] = defaultdict(int)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        group = str(doc.metadata.get("mix_group", "unknown"))
        tokens = self.tokens(doc)
        self.count_in(doc)
        self.stat_update(f"in/{group}")
        counts = self._documents.setdefault(group, dict.fromkeys(DOCUMENT_COUNTS, 0))
        counts["in"] += 1
        counts["tokens_in"] += tokens
        hits = self.index.hits(doc.text)
        if not hits:
            self.count_kept(doc)
            return True
        self.count_dropped(doc, "overlap")
        # Not "dropped/<group>": the stats table sums every "dropped/*" key as a drop reason.
        self.stat_update(f"dropped_group/{group}")
        counts["dropped"] += 1
        counts["tokens_dropped"] += tokens
        for task, examples in hits.items():
            self.stat_update(f"dropped_by/{task}")
            self._dropped_by[task] += 1
            self._examples_hit[task] |= examples
        return False, "overlap"

    def run(self, data, rank: int = 0, world_size: int = 1):
        self._reset()
        index = self.index  # built now, so that a rank with no document still reports the split sizes
        yield from super().run(data, rank, world_size)
        if self.report_dir:
            from mcbio.files import write_json_atomic

            write_json_atomic(Path(self.report_dir) / f"{rank:05d}.json", {
                "ngram": self.ngram, "split": self.split,
                "tasks": {t: {"examples": index.sizes[t], "examples_hit": sorted(self._examples_hit.get(t, ()))}
                          for t in index.tasks},
                "documents": {g: dict(c) for g, c in sorted(self._documents.items())},
                "dropped_by_task": dict(sorted(self._dropped_by.items())),
            })


def merge_overlap_reports(report_dir: str | Path) -> dict:
    """The ranks' reports in one: document counts summed, hit test examples unioned (a test
    example hit on two ranks counts once), ``share_hit`` = hit / examples per task."""
    files = sorted(Path(report_dir).glob("*.json"))
    reports = [json.loads(f.read_text(encoding="utf-8")) for f in files]
    settings = {(r["ngram"], r["split"]) for r in reports}
    if len(settings) > 1:
        raise ValueError(f"{report_dir}: reports made with different (ngram, split): {sorted(settings)}")
    sizes: Dict[str, int] = {}
    hit: Dict[str, Set[int]] = defaultdict(set)
    documents: Dict[str, Dict[str, int]] = defaultdict(lambda: defaultdict(int))
    dropped_by: Dict[str, int] = defaultdict(int)
    for r in reports:
        for task, t in r["tasks"].items():
            sizes[task] = t["examples"]
            hit[task].update(t["examples_hit"])
        for group, counts in r["documents"].items():
            for k, v in counts.items():
                documents[group][k] += v
        for task, n in r["dropped_by_task"].items():
            dropped_by[task] += n
    tasks = {t: {"examples": n, "examples_hit": len(hit[t]), "share_hit": len(hit[t]) / n if n else 0.0}
             for t, n in sorted(sizes.items())}
    totals = {k: sum(c[k] for c in documents.values()) for k in DOCUMENT_COUNTS}
    ngram, split = next(iter(settings)) if settings else (None, None)
    return {"ngram": ngram, "split": split, "ranks": len(files), "tasks": tasks,
            "documents": {g: dict(c) for g, c in sorted(documents.items())},
            "dropped_by_task": dict(sorted(dropped_by.items())),
            "totals": {**totals, "examples": sum(sizes.values()),
                       "examples_hit": sum(len(hit[t]) for t in sizes)}}
