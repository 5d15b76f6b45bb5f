"""Test-split decontamination by GPT-3's rule: cut colliding n-grams out, ignore corpus boilerplate.

The rule is that of Brown et al. 2020 ("Language Models are Few-Shot Learners", Appendix C),
also implemented by EleutherAI's lm-evaluation-harness ``Janitor``, with its numbers as the
defaults of :class:`mcbio.config.curation.DecontaminationConfig`:

* an n-gram is ``ngram`` consecutive lower-cased words (13); a test n-gram *collides* with a
  pretraining document that holds it, unless it is **boilerplate**: found in more than
  ``max_document_frequency`` (10) pretraining documents. Shared leaflet or legal text is not
  test contamination, and counting it dropped 1,137 of 1,211 drug leaflets (issue 20);
* each collision is cut out with ``window_chars`` (200) characters on either side, widened to
  whole words; the pieces left shorter than ``min_piece_chars`` (200) are removed too;
* a document split into more than ``max_pieces`` (10) pieces, or with nothing left, is
  contaminated throughout and dropped whole (reason ``overlap``, saved to ``rejects/overlap/``);
  a cut document keeps its id, its pieces joined by a blank line.

Document frequency is a corpus-wide count while the ``select`` stage runs as independent
ranks, so a counting stage runs first (:class:`OverlapCounts`, ``overlap_counts``): each rank
counts, over its share of every group's documents, the documents holding each *test* n-gram
(memory: at most the test index) and writes ``<counts_dir>/<rank:05d>.json``;
:func:`document_frequencies` sums them in each rank of ``select``.

A test example still has a **long verbatim overlap** after decontamination when the kept text
shares a non-boilerplate n-gram with it: :class:`OverlapFilter` scans what it keeps, and cuts
again until there is none (a collision can only reappear across the join of two pieces).
Its per-rank reports (:func:`merge_overlap_reports`) give both views: per group, documents
and tokens in / dropped / cut; per test split, examples sharing an n-gram before, colliding
before, still overlapping after (0), and sharing only boilerplate after.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter

from mcbio.data.curation.steps import _StepCounts
from mcbio.data.curation.text import TokenCounter

# A word: word characters and the combining marks that NFC folds into them, so that a
# decomposed accent (e + U+0301) stays inside its word while offsets stay in the original text.
_TOKEN = re.compile(r"[\w\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+")
# One (task, example) packed in an int: a Python int per n-gram instead of a set of tuples.
_EXAMPLE_BITS = 32
DOCUMENT_COUNTS = ("in", "dropped", "cut", "tokens_in", "tokens_dropped", "tokens_cut", "chars_cut")
# Per test split, the example lists of a rank's report (unioned across ranks by the merge).
EXAMPLE_LISTS = ("examples_hit", "examples_colliding", "examples_overlapping_after", "examples_boilerplate_after")


def ngram_spans(text: str, n: int) -> List[Tuple[int, int, int]]:
    """(hash, start, end) of every ``n`` consecutive words of ``text``, offsets into ``text``.

    Words are lower-cased and NFC-normalised before hashing; blake2b, not ``hash()``, whose
    salt differs per process: ranks and the test index must agree.
    """
    words = [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]
    if unicodedata.is_normalized("NFC", text):
        tokens = [w.lower() for w, _, _ in words]
    else:
        tokens = [unicodedata.normalize("NFC", w).lower() for w, _, _ in words]
    return [(int.from_bytes(hashlib.blake2b(" ".join(tokens[i:i + n]).encode("utf-8"), digest_size=8).digest(), "big"),
             words[i][1], words[i + n - 1][2])
            for i in range(len(tokens) - n + 1)]


def word_ngrams(text: str, n: int) -> Set[int]:
    """The stable 64-bit hashes of every ``n`` consecutive words of ``text`` (empty under ``n`` words)."""
    return {h for h, _, _ in ngram_spans(text, n)}


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
        # Distinct n-grams of each example: the denominator of its boilerplate share.
        self.example_ngrams: Dict[str, List[int]] = {}
        # Value: one packed example (the common case), or a frozenset of them.
        self._table: Dict[int, int | frozenset] = {}
        for t, task in enumerate(self.tasks):
            self.example_ngrams[task] = []
            for i, text in enumerate(texts[task]):
                packed = (t << _EXAMPLE_BITS) | i
                grams = word_ngrams(text, ngram)
                self.example_ngrams[task].append(len(grams))
                for h in grams:
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

    def __contains__(self, h: int) -> bool:
        return h in self._table

    def examples(self, hashes: Iterable[int]) -> Dict[str, Set[int]]:
        """task -> indices of its examples holding one of ``hashes`` (tasks with none left out)."""
        out: Dict[str, Set[int]] = defaultdict(set)
        mask = (1 << _EXAMPLE_BITS) - 1
        for h in hashes:
            found = self._table.get(h)
            if found is None:
                continue
            for packed in (found if isinstance(found, frozenset) else (found,)):
                out[self.tasks[packed >> _EXAMPLE_BITS]].add(packed & mask)
        return dict(out)

    def hits(self, text: str) -> Dict[str, Set[int]]:
        """task -> indices of its examples sharing at least one n-gram with ``text`` (hit tasks only)."""
        return self.examples(word_ngrams(text, self.ngram))

    def largest_share(self, hashes: Iterable[int]) -> Dict[str, float]:
        """task -> the largest share of one example's n-grams that are among ``hashes``."""
        held: Dict[str, Counter] = defaultdict(Counter)
        for h in hashes:
            for task, examples in self.examples((h,)).items():
                held[task].update(examples)
        return {task: max((n / self.example_ngrams[task][i] for i, n in held[task].items()), default=0.0)
                for task in self.tasks}


@dataclass(frozen=True)
class Cut:
    """What the cut rule leaves of a document: its text (None: dropped whole) and the pieces made."""

    text: Optional[str]
    pieces: int


def cut_collisions(text: str, spans: Iterable[Tuple[int, int]], window_chars: int, min_piece_chars: int,
                   max_pieces: int) -> Cut:
    """GPT-3's cut: remove each (start, end) span with ``window_chars`` around it (widened to
    whole words; overlapping windows merge), then the pieces under ``min_piece_chars``.

    The document is dropped (``text`` None) when the cuts leave more than ``max_pieces``
    non-blank pieces, or no piece long enough.
    """
    removed: List[List[int]] = []
    for start, end in sorted(spans):
        start, end = max(0, start - window_chars), min(len(text), end + window_chars)
        # A boundary inside a word moves out to the word's edge.
        while 0 < start < len(text) and not text[start - 1].isspace() and not text[start].isspace():
            start -= 1
        while 0 < end < len(text) and not text[end - 1].isspace() and not text[end].isspace():
            end += 1
        if removed and start <= removed[-1][1]:
            removed[-1][1] = max(removed[-1][1], end)
        else:
            removed.append([start, end])
    bounds = [0] + [x for window in removed for x in window] + [len(text)]
    pieces = [text[bounds[i]:bounds[i + 1]].strip() for i in range(0, len(bounds), 2)]
    pieces = [p for p in pieces if p]
    kept = [p for p in pieces if len(p) >= min_piece_chars]
    if len(pieces) > max_pieces or not kept:
        return Cut(None, len(pieces))
    return Cut("\n\n".join(kept), len(pieces))


class _IndexedStep:
    """A step that needs the test index: built in the worker on first use from the config's
    (tasks, split, ngram) and ``shared_data``, and left out of the pickle so that datatrove
    ships a few strings, not the table; tests pass a ready ``index`` instead."""

    def _init_index(self, cfg, shared_data: Optional[str], declared_tasks: Optional[Mapping],
                    index: Optional[TestSplitIndex]) -> None:
        self.cfg, self.shared_data = cfg, shared_data
        self.declared_tasks = dict(declared_tasks) if declared_tasks else None
        self._given_index = index
        self._built_index: Optional[TestSplitIndex] = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_built_index"] = None
        return state

    @property
    def index(self) -> TestSplitIndex:
        if self._given_index is not None:
            return self._given_index
        if self._built_index is None:
            self._built_index = TestSplitIndex.from_tasks(self.cfg.tasks, self.cfg.split, self.shared_data,
                                                          self.cfg.ngram, self.declared_tasks)
        return self._built_index

    def _settings(self) -> dict:
        """What the counts and reports were made with: files made otherwise must not be mixed."""
        return {"ngram": self.cfg.ngram, "split": self.cfg.split, "tasks": sorted(self.index.tasks)}


class OverlapCounts(_IndexedStep, PipelineStep):
    """Stage ``overlap_counts``: in how many of this rank's documents each test n-gram occurs.

    Writes ``<counts_dir>/<rank:05d>.json`` (settings, documents read, ``frequencies``: hash ->
    documents); only n-grams of the test index are counted, so memory is bounded by the index.
    """

    name = "overlap_counts"
    type = "🧬 CURATION"

    def __init__(self, cfg, counts_dir: str, shared_data: Optional[str] = None,
                 declared_tasks: Optional[Mapping] = None, index: Optional[TestSplitIndex] = None) -> None:
        super().__init__()
        self._init_index(cfg, shared_data, declared_tasks, index)
        self.counts_dir = counts_dir

    def run(self, data, rank: int = 0, world_size: int = 1):
        from mcbio.files import write_json_atomic

        index = self.index
        frequencies: Counter = Counter()
        documents = 0
        for doc in data or ():
            with self.track_time():
                frequencies.update(h for h in word_ngrams(doc.text, self.cfg.ngram) if h in index)
            documents += 1
        self.stat_update("documents", value=documents)
        write_json_atomic(Path(self.counts_dir) / f"{rank:05d}.json", {
            **self._settings(), "documents": documents,
            "frequencies": {str(h): n for h, n in sorted(frequencies.items())}}, indent=None)
        yield from ()


def document_frequencies(counts_dir: str | Path, ranks: int, settings: Mapping) -> Tuple[Counter, int]:
    """(test n-gram -> pretraining documents holding it, documents counted), summed over the
    ``ranks`` files of the counting stage; a missing file or one made with other settings is an error."""
    folder = Path(counts_dir)
    missing = [f"{r:05d}.json" for r in range(ranks) if not (folder / f"{r:05d}.json").is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: no n-gram counts of rank(s) {', '.join(missing)}: the overlap_counts "
                                "stage must run (complete) before select")
    total: Counter = Counter()
    documents = 0
    for r in range(ranks):
        path = folder / f"{r:05d}.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        made = {k: data.get(k) for k in settings}
        if made != dict(settings):
            raise ValueError(f"{path}: counted with {made}, but decontamination now uses {dict(settings)}: "
                             "rerun the overlap_counts stage")
        total.update({int(h): n for h, n in data["frequencies"].items()})
        documents += data["documents"]
    return total, documents


class OverlapFilter(_IndexedStep, _StepCounts, BaseFilter):
    """Cuts test text out of every document (curated or not), or drops it (reason ``overlap``).

    ``cfg`` is the :class:`~mcbio.config.curation.DecontaminationConfig`; the boilerplate
    n-grams come from the ``count_ranks`` files of ``counts_dir``. With ``report_dir``, each
    rank writes ``<report_dir>/<rank:05d>.json`` (groups' counts, test examples per view).
    """

    name = "overlap"

    def __init__(self, cfg, counts_dir: str, count_ranks: int, shared_data: Optional[str] = None,
                 counter: Optional[TokenCounter] = None, exclusion_writer: Optional[DiskWriter] = None,
                 report_dir: Optional[str] = None, declared_tasks: Optional[Mapping] = None,
                 index: Optional[TestSplitIndex] = None) -> None:
        super().__init__(exclusion_writer)
        self._init_index(cfg, shared_data, declared_tasks, index)
        self.counter = counter or TokenCounter()
        self.counts_dir, self.count_ranks = counts_dir, count_ranks
        self.report_dir = report_dir
        self._reset()

    def __getstate__(self):
        state = super().__getstate__()
        state["_boilerplate"] = None
        return state

    def _reset(self) -> None:
        self._boilerplate: Optional[Set[int]] = None
        self._seen = (0, 0)  # (test n-grams found in the corpus, documents counted)
        self._examples: Dict[str, Dict[str, Set[int]]] = {k: defaultdict(set) for k in EXAMPLE_LISTS}
        self._documents: Dict[str, Dict[str, int]] = {}  # plain dicts: a lambda default would not pickle
        self._by_task: Dict[str, Dict[str, int]] = {"dropped": defaultdict(int), "cut": defaultdict(int)}

    @property
    def boilerplate(self) -> Set[int]:
        """The test n-grams found in more than ``max_document_frequency`` pretraining documents."""
        if self._boilerplate is None:
            frequencies, documents = document_frequencies(self.counts_dir, self.count_ranks, self._settings())
            self._boilerplate = {h for h, n in frequencies.items() if n > self.cfg.max_document_frequency}
            self._seen = (len(frequencies), documents)
        return self._boilerplate

    def _note(self, view: str, hashes: Iterable[int]) -> Set[str]:
        """Add the examples holding ``hashes`` to ``view``; the tasks concerned."""
        found = self.index.examples(hashes)
        for task, examples in found.items():
            self._examples[view][task] |= examples
        return set(found)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        group = str(doc.metadata.get("mix_group", "unknown"))
        tokens = self.tokens(doc)
        self.count_in(doc)
        self.stat_update(f"in/{group}")
        counts = self._documents.setdefault(group, dict.fromkeys(DOCUMENT_COUNTS, 0))
        counts["in"] += 1
        counts["tokens_in"] += tokens
        index, boilerplate, c = self.index, self.boilerplate, self.cfg
        text = doc.text
        shared = [s for s in ngram_spans(text, c.ngram) if s[0] in index]
        self._note("examples_hit", (h for h, _, _ in shared))
        tasks: Set[str] = set()
        while True:
            colliding = [s for s in shared if s[0] not in boilerplate]
            if not colliding:
                break
            # Each pass cuts what collides; a later one only what the joins of pieces made.
            tasks |= self._note("examples_colliding", (h for h, _, _ in colliding))
            cut = cut_collisions(text, [(s, e) for _, s, e in colliding], c.window_chars, c.min_piece_chars,
                                 c.max_pieces)
            if cut.text is None:
                return self._drop(doc, group, counts, tokens, tasks)
            text = cut.text
            shared = [s for s in ngram_spans(text, c.ngram) if s[0] in index]
        self._note("examples_boilerplate_after", (h for h, _, _ in shared))
        if text != doc.text:
            self._cut(doc, text, group, counts, tokens, tasks)
        self.count_kept(doc)
        return True

    def _drop(self, doc: Document, group: str, counts: Dict[str, int], tokens: int, tasks: Set[str]):
        self.count_dropped(doc, "overlap")
        # Not "dropped/<group>": the stats table sums every "dropped/*" key as a drop reason.
        self.stat_update(f"dropped_group/{group}")
        counts["dropped"] += 1
        counts["tokens_dropped"] += tokens
        for task in sorted(tasks):
            self.stat_update(f"dropped_by/{task}")
            self._by_task["dropped"][task] += 1
        return False, "overlap"

    def _cut(self, doc: Document, text: str, group: str, counts: Dict[str, int], tokens: int,
             tasks: Set[str]) -> None:
        """Keep the cut text under the document's id; later steps read its new token count."""
        chars = len(doc.text) - len(text)
        doc.text = text
        doc.metadata["n_tokens"] = self.counter(text)
        doc.metadata["overlap_cut_chars"] = chars
        removed = tokens - doc.metadata["n_tokens"]
        self.stat_update("cut")
        self.stat_update(f"cut_group/{group}")
        self.stat_update("tokens_cut", value=removed, unit="doc")
        counts["cut"] += 1
        counts["tokens_cut"] += removed
        counts["chars_cut"] += chars
        for task in sorted(tasks):
            self.stat_update(f"cut_by/{task}")
            self._by_task["cut"][task] += 1

    def run(self, data, rank: int = 0, world_size: int = 1):
        self._reset()
        # Now, so that a rank with no document still reports the split sizes and the boilerplate.
        index, boilerplate = self.index, self.boilerplate
        yield from super().run(data, rank, world_size)
        if self.report_dir:
            from mcbio.files import write_json_atomic

            largest = index.largest_share(boilerplate)
            c = self.cfg
            write_json_atomic(Path(self.report_dir) / f"{rank:05d}.json", {
                "ngram": c.ngram, "split": c.split,
                "rules": {"max_document_frequency": c.max_document_frequency, "window_chars": c.window_chars,
                          "min_piece_chars": c.min_piece_chars, "max_pieces": c.max_pieces},
                "boilerplate": {"test_ngrams": len(index), "test_ngrams_in_corpus": self._seen[0],
                                "boilerplate_ngrams": len(boilerplate), "documents_counted": self._seen[1]},
                "tasks": {t: {"examples": index.sizes[t], "boilerplate_share_max": largest[t],
                              **{k: sorted(self._examples[k].get(t, ())) for k in EXAMPLE_LISTS}}
                          for t in index.tasks},
                "documents": {g: dict(n) for g, n in sorted(self._documents.items())},
                "dropped_by_task": dict(sorted(self._by_task["dropped"].items())),
                "cut_by_task": dict(sorted(self._by_task["cut"].items())),
            })


def merge_overlap_reports(report_dir: str | Path) -> dict:
    """The ranks' reports in one: counts summed, test examples unioned (an example hit on two
    ranks counts once). Per task: ``examples_hit`` (sharing any n-gram before, the old rule's
    view), ``examples_colliding`` (a non-boilerplate one), ``examples_overlapping_after`` (a
    non-boilerplate n-gram in the kept text: 0 by construction), ``examples_boilerplate_only``
    (only boilerplate n-grams shared with the kept text), ``boilerplate_share_max``. Per group,
    ``tokens_kept`` and ``share_kept`` besides the summed counts. Reports written before the cut
    rule (no cuts, every shared n-gram colliding) merge too; their after-views are None."""
    files = sorted(Path(report_dir).glob("*.json"))
    reports = [json.loads(f.read_text(encoding="utf-8")) for f in files]
    settings = {(r["ngram"], r["split"], json.dumps(r.get("rules"), sort_keys=True)) for r in reports}
    if len(settings) > 1:
        raise ValueError(f"{report_dir}: reports made with different (ngram, split, rules): {sorted(settings)}")
    sizes: Dict[str, int] = {}
    lists: Dict[str, Dict[str, Set[int]]] = {k: defaultdict(set) for k in EXAMPLE_LISTS}
    share: Dict[str, float] = {}
    documents: Dict[str, Dict[str, int]] = defaultdict(lambda: dict.fromkeys(DOCUMENT_COUNTS, 0))
    by_task: Dict[str, Dict[str, int]] = {"dropped_by_task": defaultdict(int), "cut_by_task": defaultdict(int)}
    for r in reports:
        for task, t in r["tasks"].items():
            sizes[task] = t["examples"]
            share[task] = max(share.get(task, 0.0), t.get("boilerplate_share_max", 0.0))
            for k in EXAMPLE_LISTS:
                lists[k][task].update(t.get(k, ()))
        for group, counts in r["documents"].items():
            for k, v in counts.items():
                documents[group][k] += v
        for key, merged in by_task.items():
            for task, n in r.get(key, {}).items():
                merged[task] += n
    cut_rule = all("rules" in r for r in reports)
    tasks = {}
    for t, n in sorted(sizes.items()):
        hit = len(lists["examples_hit"][t])
        after = lists["examples_overlapping_after"][t]
        tasks[t] = {"examples": n, "examples_hit": hit, "share_hit": hit / n if n else 0.0,
                    # Before the cut rule every shared n-gram collided and nothing was kept of a hit document.
                    "examples_colliding": len(lists["examples_colliding"][t]) if cut_rule else hit,
                    "examples_overlapping_after": len(after) if cut_rule else None,
                    "examples_boilerplate_only": len(lists["examples_boilerplate_after"][t] - after) if cut_rule
                    else None,
                    "boilerplate_share_max": share[t] if cut_rule else None}
    groups = {}
    for g, c in sorted(documents.items()):
        kept = c["tokens_in"] - c["tokens_dropped"] - c["tokens_cut"]
        groups[g] = {**c, "tokens_kept": kept, "share_kept": kept / c["tokens_in"] if c["tokens_in"] else 1.0}
    totals = {k: sum(c[k] for c in documents.values()) for k in DOCUMENT_COUNTS}
    ngram, split, rules = next(iter(settings)) if settings else (None, None, "null")
    return {"ngram": ngram, "split": split, "rules": json.loads(rules), "ranks": len(files),
            "boilerplate": reports[0].get("boilerplate") if reports else None, "tasks": tasks, "documents": groups,
            **{k: dict(sorted(v.items())) for k, v in by_task.items()},
            "totals": {**totals, "examples": sum(sizes.values()),
                       **{k: sum(tasks[t][k] for t in tasks) if cut_rule or k != "examples_overlapping_after"
                          else None
                          for k in ("examples_hit", "examples_colliding", "examples_overlapping_after")}}}
