"""Mix by token share (articles 70 %, ontology textbooks 20 %, EMEA 6 %, E3C 4 %), seeded and streaming.

Memory stays bounded whatever the corpus size; two passes over each group's documents:

1. :class:`GroupTally` counts tokens x upsampling factor per group and :func:`mix_scales`
   turns shares and budget into one ``scale = target tokens / pool tokens`` per group.
2. :class:`StreamingMix` gives every document ``factor x scale`` copies in expectation
   (floor, plus one with the fractional probability). The draw is a hash of (seed, group,
   document id), so no plan is stored and a rerun makes the same choices.

Copies are emitted in rounds, like epochs: round r holds the documents with more than r
copies, the first round read from the source, the later ones from a disk spool that
shrinks each round. The copies of a document are thus a whole round apart and each
document is prepared (tokenised) once. Groups are interleaved by a seeded draw weighted
by their remaining expected copies (what a global shuffle of every copy gives), and a
bounded shuffle buffer then mixes neighbours.
"""

from __future__ import annotations

import logging
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from mcbio.data.curation.upsample import copies

log = logging.getLogger(__name__)

# Documents prepared (tokenised) per call: batching amortises the tokenizer's per-call cost.
PREPARE_BATCH = 256


@dataclass
class PoolDoc:
    tokens: int
    factor: float = 1.0


@dataclass
class MixDoc:
    """One document of a group's stream: ``key`` (unique in its group) seeds its copy draw,
    ``payload`` is what the mix emits (after ``prepare``)."""

    key: str
    tokens: int
    factor: float
    payload: Any


@dataclass
class GroupTally:
    documents: int = 0
    # Sum of tokens x factor: the group's tokens at scale 1.
    tokens: float = 0.0
    # Sum of factors: the group's expected copies at scale 1.
    weight: float = 0.0

    def add(self, tokens: int, factor: float) -> None:
        self.documents += 1
        self.tokens += tokens * factor
        self.weight += factor


def mix_scales(
    available: Dict[str, float], shares: Dict[str, float], total_tokens: Optional[int], renormalize_missing: bool
) -> Tuple[Dict[str, float], float]:
    """The shares actually mixed (absent groups renormalised away) and the token total."""
    wanted = {g: s for g, s in shares.items() if s > 0}
    missing = [g for g in wanted if available.get(g, 0) <= 0]
    if missing:
        if not renormalize_missing:
            raise ValueError(f"mix: no documents for group(s) {', '.join(missing)} "
                             "(set mix.renormalize_missing=true to share their tokens among the others)")
        log.warning("mix: no documents for %s; renormalising the other shares", ", ".join(missing))
        wanted = {g: s for g, s in wanted.items() if g not in missing}
    if not wanted:
        raise ValueError("mix: none of the groups in mix.shares has documents")
    norm = sum(wanted.values())
    wanted = {g: s / norm for g, s in wanted.items()}
    total = float(total_tokens) if total_tokens else min(available[g] / s for g, s in wanted.items())
    return wanted, total


class CopySpool:
    """Append-only file of ``(copies left, item)`` records, read back once in write order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._handle = open(path, "wb")

    def write(self, left: int, item: Any) -> None:
        pickle.dump((left, item), self._handle, protocol=pickle.HIGHEST_PROTOCOL)
        self.count += 1

    def drain(self) -> Iterator[Tuple[int, Any]]:
        self._handle.close()
        try:
            with open(self.path, "rb") as handle:
                for _ in range(self.count):
                    yield pickle.load(handle)
        finally:
            self.discard()

    def discard(self) -> None:
        self._handle.close()
        self.path.unlink(missing_ok=True)


def copy_rounds(first: Iterable[Tuple[int, Any]], spool_dir: Path, name: str) -> Iterator[Any]:
    """Yield each ``(n, item)`` of ``first`` once, then again in later rounds until n copies are out."""
    spool = CopySpool(spool_dir / f"{name}.r1")
    for n, item in first:
        yield item
        if n > 1:
            spool.write(n - 1, item)
    r = 1
    while spool.count:
        r += 1
        previous, spool = spool, CopySpool(spool_dir / f"{name}.r{r}")
        for left, item in previous.drain():
            yield item
            if left > 1:
                spool.write(left - 1, item)
    spool.discard()


def interleave(streams: Dict[str, Iterator[Any]], expected: Dict[str, float], seed: int) -> Iterator[Tuple[str, Any]]:
    """Seeded merge: the next item comes from a group with probability proportional to its
    remaining expected copies (at least 1 while it still has items)."""
    groups = sorted(streams)
    iters = [iter(streams[g]) for g in groups]
    remaining = [float(expected[g]) for g in groups]
    active = [True] * len(groups)
    rng = np.random.default_rng([seed, 1])
    draws: List[float] = []
    while any(active):
        if not draws:
            draws = rng.random(4096).tolist()
        weights = [max(r, 1.0) if a else 0.0 for r, a in zip(remaining, active)]
        x = draws.pop() * sum(weights)
        i = 0
        while i < len(groups) - 1 and (x >= weights[i] or not active[i]):
            x -= weights[i]
            i += 1
        if not active[i]:  # rounding put x past the last active group
            i = max(j for j, a in enumerate(active) if a)
        try:
            item = next(iters[i])
        except StopIteration:
            active[i] = False
            continue
        remaining[i] -= 1
        yield groups[i], item


def shuffle_buffer(items: Iterable[Any], size: int, seed: int) -> Iterator[Any]:
    """Reservoir-style local shuffle holding at most ``size`` items (1 = order kept)."""
    if size <= 1:
        yield from items
        return
    rng = np.random.default_rng([seed, 2])
    buf: List[Any] = []
    picks: List[int] = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        if not picks:
            picks = rng.integers(0, size, 4096).tolist()
        j = picks.pop()
        yield buf[j]
        buf[j] = item
    for j in rng.permutation(len(buf)):
        yield buf[j]


class StreamingMix:
    """The mixed sequence of ``(group, prepared payload)``, generated with bounded memory.

    ``open_group(g)`` returns a fresh iterator of :class:`MixDoc` for group ``g`` (read once per
    iteration of the mix, plus once by :meth:`used_payloads`); ``tallies`` come from a first pass
    over the same documents. ``prepare`` maps a batch of payloads (e.g. texts -> token ids).
    ``report`` is complete once the mix has been iterated to the end.
    """

    def __init__(
        self,
        open_group: Callable[[str], Iterable[MixDoc]],
        tallies: Dict[str, GroupTally],
        shares: Dict[str, float],
        total_tokens: Optional[int],
        seed: int,
        renormalize_missing: bool = True,
        buffer_size: int = 10_000,
        spool_dir: Optional[Path] = None,
        prepare: Optional[Callable[[List[Any]], Sequence[Any]]] = None,
    ) -> None:
        self.open_group, self.seed, self.buffer_size = open_group, seed, buffer_size
        self.spool_dir, self.prepare = spool_dir, prepare
        available = {g: t.tokens for g, t in tallies.items()}
        wanted, total = mix_scales(available, shares, total_tokens, renormalize_missing)
        self.groups = sorted(wanted)
        self.scales = {g: wanted[g] * total / available[g] for g in self.groups}
        self.expected_copies = {g: self.scales[g] * tallies[g].weight for g in self.groups}
        self.report: dict = {"total_tokens_target": int(total), "seed": seed, "shuffle_buffer": buffer_size, "groups": {
            g: {"share_target": wanted[g], "tokens_available": int(available[g]), "tokens_target": int(wanted[g] * total),
                "tokens_mixed": 0, "documents": tallies[g].documents, "copies": 0, "scale": self.scales[g]}
            for g in self.groups}}

    def _copies(self, group: str, doc: MixDoc) -> int:
        return copies(doc.factor * self.scales[group], f"{group}:{doc.key}", self.seed)

    def used_payloads(self) -> Iterator[Any]:
        """Raw payloads of the documents with at least one copy, group by group (e.g. to train a tokenizer)."""
        for group in self.groups:
            for doc in self.open_group(group):
                if self._copies(group, doc) > 0:
                    yield doc.payload

    def _first_round(self, group: str) -> Iterator[Tuple[int, Any]]:
        stats = self.report["groups"][group]
        batch: List[Tuple[int, Any]] = []
        for doc in self.open_group(group):
            n = self._copies(group, doc)
            if n <= 0:
                continue
            stats["copies"] += n
            stats["tokens_mixed"] += n * int(doc.tokens)
            batch.append((n, doc.payload))
            if len(batch) >= PREPARE_BATCH:
                yield from self._prepared(batch)
                batch = []
        yield from self._prepared(batch)

    def _prepared(self, batch: List[Tuple[int, Any]]) -> Iterator[Tuple[int, Any]]:
        if not batch or self.prepare is None:
            yield from batch
            return
        out = self.prepare([p for _, p in batch])
        if len(out) != len(batch):
            raise ValueError(f"mix: prepare returned {len(out)} items for {len(batch)} documents")
        yield from zip((n for n, _ in batch), out)

    def _finish_report(self) -> None:
        groups = self.report["groups"]
        mixed = sum(g["tokens_mixed"] for g in groups.values()) or 1
        for g in groups.values():
            g["share_mixed"] = g["tokens_mixed"] / mixed
        self.report["tokens_mixed"] = mixed

    def __iter__(self) -> Iterator[Tuple[str, Any]]:
        for stats in self.report["groups"].values():  # a second iteration recounts from zero
            stats["copies"] = stats["tokens_mixed"] = 0
        parent = None
        if self.spool_dir is not None:
            parent = Path(self.spool_dir)
            parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="mix-spool-", dir=parent) as tmp:
            streams = {g: copy_rounds(self._first_round(g), Path(tmp), g) for g in self.groups}
            yield from shuffle_buffer(interleave(streams, self.expected_copies, self.seed),
                                      self.buffer_size, self.seed)
        self._finish_report()


def plan_mix(
    pools: Dict[str, Sequence[PoolDoc]],
    shares: Dict[str, float],
    total_tokens: Optional[int],
    seed: int,
    renormalize_missing: bool = True,
    buffer_size: int = 10_000,
) -> Tuple[List[Tuple[str, int]], dict]:
    """The mixed sequence of ``(group, document index)`` for in-memory pools, and the per-group report."""
    tallies: Dict[str, GroupTally] = {}
    for group, docs in pools.items():
        tally = tallies.setdefault(group, GroupTally())
        for d in docs:
            tally.add(d.tokens, d.factor)

    def open_group(group: str) -> Iterator[MixDoc]:
        return (MixDoc(str(i), d.tokens, d.factor, (group, i)) for i, d in enumerate(pools.get(group, ())))

    mix = StreamingMix(open_group, tallies, shares, total_tokens, seed, renormalize_missing, buffer_size)
    plan = [payload for _, payload in mix]
    return plan, mix.report
