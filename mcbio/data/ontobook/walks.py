"""Biased random walks: the edge type of each step drawn by roulette over configured weights.

A walk never revisits a concept. When its last concept has nowhere new to go it either
stops or (``backtrack``) continues from the latest visited concept that can still move,
so a walk is a sequence of steps ``(source, edge type, target)`` whose source is usually,
but not always, the previous target. Walks are drawn from a ``random.Random`` seeded from
(seed, ontology, shard, walk type), so a shard always yields the same walks.
"""

from __future__ import annotations

import hashlib
import random
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from mcbio.data.ontobook.graph import OntologyGraph

Step = Tuple[str, str, str]


@dataclass(frozen=True)
class Walk:
    ontology: str
    walk_type: str
    start: str
    steps: Tuple[Step, ...]

    @property
    def nodes(self) -> List[str]:
        return [self.start] + [target for _, _, target in self.steps]

    @property
    def key(self) -> str:
        """Identity for deduplication: the same concepts reached by the same steps."""
        blob = "|".join([self.ontology, self.start] + ["/".join(s) for s in self.steps])
        return hashlib.sha1(blob.encode("utf-8")).hexdigest()[:20]


def roulette(weights: Mapping[str, float], rng: random.Random) -> str:
    """Draw a key with probability proportional to its weight (weights > 0, at least one)."""
    keys = [k for k, w in weights.items() if w > 0]
    if not keys:
        raise ValueError(f"roulette over no positive weight: {dict(weights)}")
    cumulative = list(accumulate(weights[k] for k in keys))
    return keys[bisect_right(cumulative, rng.random() * cumulative[-1])]


def _options(graph: OntologyGraph, node: str, weights: Mapping[str, float], visited: set) -> Dict[str, List[str]]:
    found = {}
    for etype, weight in weights.items():
        if weight > 0:
            fresh = [n for n in graph.neighbours(node, etype) if n not in visited]
            if fresh:
                found[etype] = fresh
    return found


def random_walk(
    graph: OntologyGraph,
    start: str,
    weights: Mapping[str, float],
    n_steps: int,
    rng: random.Random,
    backtrack: bool = True,
    walk_type: str = "walk",
) -> Walk:
    """A walk of up to ``n_steps`` steps from ``start`` (fewer when every path is exhausted)."""
    path = [start]
    visited = {start}
    steps: List[Step] = []
    while len(steps) < n_steps:
        options: Dict[str, List[str]] = {}
        source = path[-1]
        for candidate in (reversed(path) if backtrack else [path[-1]]):
            options = _options(graph, candidate, weights, visited)
            if options:
                source = candidate
                break
        if not options:
            break
        etype = roulette({t: weights[t] for t in options}, rng)
        target = rng.choice(options[etype])
        steps.append((source, etype, target))
        visited.add(target)
        path.append(target)
    return Walk(graph.name, walk_type, start, tuple(steps))


@dataclass
class WalkCounts:
    attempts: int = 0
    too_few_steps: int = 0
    duplicates: int = 0
    too_short_text: int = 0
    kept: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def generate_walks(
    graph: OntologyGraph,
    walk_type: str,
    weights: Mapping[str, float],
    starts: Sequence[str],
    n_walks: int,
    rng: random.Random,
    min_steps: int,
    max_steps: int,
    min_chars: int,
    verbalise: Callable[[Walk], str],
    backtrack: bool = True,
    max_attempts_per_walk: int = 20,
    seen: Optional[set] = None,
    counts: Optional[WalkCounts] = None,
) -> Iterator[Tuple[Walk, str]]:
    """Yield up to ``n_walks`` distinct walks of ``min_steps``..``max_steps`` steps with their text.

    Walks whose verbalised text is under ``min_chars`` characters are dropped; ``seen``
    (walk keys) is shared across walk types so no walk is produced twice.
    """
    if not starts:
        raise ValueError(f"{graph.name}/{walk_type}: no start node matches the walk type's start conditions")
    seen = set() if seen is None else seen
    counts = counts or WalkCounts()
    kept = attempts = 0
    budget = max(1, n_walks) * max_attempts_per_walk
    while kept < n_walks and attempts < budget:
        attempts += 1
        counts.attempts += 1
        start = starts[rng.randrange(len(starts))]
        walk = random_walk(graph, start, weights, rng.randint(min_steps, max_steps), rng, backtrack, walk_type)
        if len(walk.steps) < min_steps:
            counts.too_few_steps += 1
            continue
        if walk.key in seen:
            counts.duplicates += 1
            continue
        seen.add(walk.key)
        text = verbalise(walk)
        if len(text) < min_chars:
            counts.too_short_text += 1
            continue
        counts.kept += 1
        kept += 1
        yield walk, text
