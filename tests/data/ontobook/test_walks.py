"""Roulette proportions, walk rules, determinism under a seed, deduplication, the 300-character cut."""

import random
from collections import Counter

import pytest

from mcbio.config.ontobook import _atc_walk_types, _cim10_walk_types, OntologySourceConfig, WalkConfig
from mcbio.data.ontobook.build import shard_walks, split_evenly, type_quotas
from mcbio.data.ontobook.graph import Concept, OntologyGraph
from mcbio.data.ontobook.verbalise import verbalise
from mcbio.data.ontobook.walks import generate_walks, random_walk, roulette


def test_roulette_matches_weights_over_many_draws():
    weights = {"narrower": 0.5, "sibling": 0.3, "broader": 0.15, "caused_by": 0.05, "excludes": 0.0}
    rng = random.Random(123)
    n = 200_000
    counts = Counter(roulette(weights, rng) for _ in range(n))
    assert "excludes" not in counts  # weight 0 is never drawn
    for key, weight in weights.items():
        # binomial sd at p=0.5 is ~0.0011 here: 0.005 is > 4 sd
        assert abs(counts[key] / n - weight) < 0.005, (key, counts[key] / n)
    with pytest.raises(ValueError):
        roulette({"narrower": 0.0}, rng)


def _chain_graph(n: int = 30) -> OntologyGraph:
    """A root with n children in a row: only narrower/broader/sibling moves."""
    g = OntologyGraph("toy", r"T\d{2}")
    g.add_concept(Concept("T00", "racine", "category", 0, "T00"))
    for i in range(1, n):
        g.add_concept(Concept(f"T{i:02d}", f"enfant {i}", "subcode", 1, f"T{i:02d}"))
        g.add_edge("T00", "narrower", f"T{i:02d}")
    return g


def test_walk_never_revisits_and_respects_weights_and_length():
    g = _chain_graph()
    rng = random.Random(0)
    for _ in range(50):
        walk = random_walk(g, "T05", {"sibling": 1.0, "broader": 0.0}, 12, rng)
        assert len(walk.steps) == 12
        assert len(set(walk.nodes)) == len(walk.nodes)
        assert {t for _, t, _ in walk.steps} == {"sibling"}
        assert all(g.has_edge(s, t, o) for s, t, o in walk.steps)


def test_walk_stops_without_backtracking_and_continues_with_it():
    g = _chain_graph(4)  # T00 with 3 children
    rng = random.Random(1)
    w = random_walk(g, "T00", {"narrower": 1.0}, 5, rng, backtrack=False)
    assert len(w.steps) == 1  # a leaf has no narrower edge
    w = random_walk(g, "T00", {"narrower": 1.0}, 5, rng, backtrack=True)
    assert len(w.steps) == 3 and all(s == "T00" for s, _, _ in w.steps)  # back to the root each time


def test_walks_are_deterministic_under_a_seed_and_differ_across_seeds(cim10_graph):
    def draw(seed):
        wt = _cim10_walk_types()["lateral"]
        starts = cim10_graph.nodes(wt.start_kinds)
        walks = generate_walks(cim10_graph, "lateral", wt.edge_weights, starts, 20, random.Random(seed),
                               3, 6, 0, lambda w: verbalise(w, cim10_graph))
        return [w.key for w, _ in walks]

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)


def test_shard_walks_are_deterministic_distinct_and_split_by_type(atc_graph):
    onto = OntologySourceConfig(format="atc_json", walks=60, shards=3, walk_types=_atc_walk_types())
    walk_cfg = WalkConfig(min_steps=3, max_steps=6, min_chars=0, seed=5)
    first, counts = shard_walks(atc_graph, onto, walk_cfg, 1, progress=False)
    again, _ = shard_walks(atc_graph, onto, walk_cfg, 1, progress=False)
    other, _ = shard_walks(atc_graph, onto, walk_cfg, 2, progress=False)
    keys = [w.key for w, _, _ in first]
    assert keys == [w.key for w, _, _ in again]
    assert keys != [w.key for w, _, _ in other]
    assert len(set(keys)) == len(keys)  # deduplicated within the shard
    assert {k: c["kept"] for k, c in counts.items()} == type_quotas(20, {"hierarchy": 0.4, "substances": 0.4, "drugs": 0.2})
    assert all(3 <= len(w.steps) <= 6 for w, _, _ in first)


def test_duplicates_are_dropped_and_counted():
    g = _chain_graph(4)
    from mcbio.data.ontobook.walks import WalkCounts

    counts = WalkCounts()
    walks = list(generate_walks(g, "t", {"narrower": 1, "broader": 1, "sibling": 1}, ["T01"], 50, random.Random(0),
                                2, 3, 0, lambda w: "x", counts=counts, max_attempts_per_walk=5))
    keys = [w.key for w, _ in walks]
    assert len(keys) == len(set(keys)) < 50  # a 4-node graph has few distinct walks
    assert counts.duplicates > 0 and counts.kept == len(walks)


def test_walks_under_min_chars_are_dropped(cim10_graph):
    wt = _cim10_walk_types()["lateral"]
    starts = cim10_graph.nodes(wt.start_kinds)
    texts = {}

    def text(w):
        texts[w.key] = verbalise(w, cim10_graph)
        return texts[w.key]

    from mcbio.data.ontobook.walks import WalkCounts

    counts = WalkCounts()
    kept = list(generate_walks(cim10_graph, "lateral", wt.edge_weights, starts, 30, random.Random(3), 1, 4, 300, text,
                               counts=counts))
    assert kept and all(len(t) >= 300 for _, t in kept)
    assert counts.too_short_text > 0
    # What was dropped was verbalised under 300 characters.
    dropped = [t for k, t in texts.items() if k not in {w.key for w, _ in kept}]
    assert dropped and all(len(t) < 300 for t in dropped)


def test_quotas_sum_exactly():
    assert sum(split_evenly(400_000, 7, i) for i in range(7)) == 400_000
    q = type_quotas(101, {"a": 0.45, "b": 0.4, "c": 0.15})
    assert sum(q.values()) == 101 and q == {"a": 46, "b": 40, "c": 15}
