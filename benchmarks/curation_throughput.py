"""Throughput of the non-LLM curation stages on the E3C text, and dedup cost vs corpus size.

Usage: python benchmarks/curation_throughput.py [--data ../shared/data] [--docs 300]
Prints documents/s and tokens/s (regex token estimate) per stage; the rules extractor
stands in for the LLM so that passages exist (its time is reported separately).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from mcbio.config.curation import FineWeb2Config, SourceConfig
from mcbio.data.curation.chain import fineweb2_steps
from mcbio.data.curation.dedup import WindowDeduplicator
from mcbio.data.curation.llm_tasks import extraction_prompt, parse_extraction, rules_extract
from mcbio.data.curation.readers import build_reader
from mcbio.data.curation.segment import segment_text
from mcbio.data.curation.steps import JaccardDedup, PassageFilter
from mcbio.data.curation.text import TokenCounter


def timed(label, fn, n_docs, n_tokens):
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    print(f"{label:28s} {n_docs:7d} docs {dt:8.2f} s  {n_docs / dt:10.1f} docs/s  {n_tokens / dt:12.0f} tokens/s")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("MCBIO_DATA", "../shared/data"))
    ap.add_argument("--docs", type=int, default=300)
    args = ap.parse_args()
    folder = Path(args.data) / "e3c_fr_unlabeled" / "layer3_journal"
    reader = build_reader("e3c", SourceConfig(path=str(folder), format="e3c_json", limit=args.docs))
    counter = TokenCounter()
    docs = timed("read (E3C json)", lambda: list(reader.run(None, 0, 1)), args.docs, 0)
    tokens = sum(counter(d.text) for d in docs)
    print(f"corpus: {len(docs)} documents, {tokens} tokens (regex estimate)")
    chunks = timed("segment", lambda: [c for d in docs for c in segment_text(d.text, 5000, counter)], len(docs), tokens)
    passages = timed("extract (rules, not LLM)", lambda: [p for c in chunks for p in
                     parse_extraction(rules_extract(extraction_prompt(c, 600)))], len(chunks), tokens)
    from datatrove.data import Document

    def fresh():
        return [Document(text=p, id=str(i), metadata={"curate": True}) for i, p in enumerate(passages)]

    n_tok = sum(counter(p) for p in passages)
    for step in [PassageFilter(30, 600, 0.6, counter), JaccardDedup(0.8, 5, 1, counter), *fineweb2_steps(FineWeb2Config(), counter)]:
        timed(step.name, lambda: list(step.run(iter(fresh()), 0, 1)), len(passages), n_tok)

    print("\ndedup cost vs corpus size (window 5 is O(n); an all-pairs Jaccard would be O(n^2))")
    base = passages * (1 + 4000 // max(1, len(passages)))
    for n in (500, 1000, 2000, 4000):
        items = base[:n]
        d = WindowDeduplicator(0.8, 5)
        t0 = time.perf_counter()
        for p in items:
            d.is_duplicate(p)
        dt = time.perf_counter() - t0
        print(f"  window=5   n={n:5d}  {dt:7.3f} s  {1e6 * dt / n:8.1f} us/passage")
    for n in (250, 500, 1000):
        items = base[:n]
        d = WindowDeduplicator(0.8, window=n)  # every kept passage: the all-pairs cost
        t0 = time.perf_counter()
        for p in items:
            d.is_duplicate(p)
        dt = time.perf_counter() - t0
        print(f"  all-pairs  n={n:5d}  {dt:7.3f} s  {1e6 * dt / n:8.1f} us/passage")


if __name__ == "__main__":
    main()
