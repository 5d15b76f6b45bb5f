"""OntoBook walk generation speed on the real CIM-10 (and ATC): walks/s per walk type.

A walk here is the full walk stage of a shard: roulette-biased walk of 8-20 steps,
deduplication, French verbalisation and the 300-character cut (no LLM). Prints the graph
load time, walks/s per walk type and overall, and the projected CPU-hours for the
paper's volume of that ontology (CIM-10 400k, ATC 140k walks).

    MCBIO_DATA=/path/to/data OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ontobook_walks.py [--walks 5000] [--ontology atc]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from mcbio.config.loader import load_config
from mcbio.config.ontobook import OntobookRunConfig
from mcbio.data.ontobook.build import shard_walks, type_quotas
from mcbio.data.ontobook.sources import load_ontology

EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "ontobook" / "config.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ontology", default="cim10", choices=["cim10", "atc"])
    parser.add_argument("--walks", type=int, default=5000, help="walks to generate (one shard)")
    parser.add_argument("--data", default=os.environ.get("MCBIO_DATA", "../shared/data"))
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    cfg = load_config(OntobookRunConfig, EXPERIMENT, [f"walk.seed={args.seed}"])
    onto = cfg.ontologies[args.ontology]
    paper_walks = onto.walks
    t0 = time.perf_counter()
    graph, stats = load_ontology(args.ontology, onto, args.data)
    load_s = time.perf_counter() - t0
    print(f"{args.ontology}: {stats['concepts']} concepts, edges {stats['edges']}; loaded in {load_s:.2f} s")

    # One shard of exactly --walks walks, split by type as configured.
    onto.walks, onto.shards = args.walks, 1
    t0 = time.perf_counter()
    items, counts = shard_walks(graph, onto, cfg.walk, 0, progress=False)
    total_s = time.perf_counter() - t0
    rate = len(items) / total_s
    quotas = type_quotas(args.walks, {k: v.share for k, v in onto.walk_types.items()})
    print(f"walks kept: {len(items)} in {total_s:.2f} s -> {rate:,.0f} walks/s overall (1 core)")
    for name, c in counts.items():
        print(f"  {name:<11} kept {c['kept']:>6}/{quotas[name]:<6} attempts {c['attempts']:>6} "
              f"too_few_steps {c['too_few_steps']} duplicates {c['duplicates']} too_short_text {c['too_short_text']}")
    chars = sorted(len(t) for _, _, t in items)
    steps = [len(w.steps) for w, _, _ in items]
    print(f"verbalised chars: min {chars[0]} median {statistics.median(chars):.0f} max {chars[-1]}; "
          f"steps mean {statistics.mean(steps):.1f}")
    print(f"paper volume {paper_walks:,} walks -> {paper_walks / rate / 3600:.2f} CPU-hours of walk generation")


if __name__ == "__main__":
    main()
