"""Throughput of the non-LLM curation stages on the E3C text, and dedup cost vs corpus size.

Usage: python benchmarks/curation_throughput.py [--data /path/to/data (default: $MCBIO_DATA)] [--docs 300] [--rounds 3]
Prints documents/s and tokens/s (regex token estimate) per stage; the rules extractor
stands in for the LLM so that passages exist (its time is reported separately).

The FineWeb-2 chain runs twice on the same passages, side by side in one process (``--rounds 3``
times, alternating which goes first): as datatrove ships it and as the pipeline runs it (one
shared word tokenisation, :mod:`mcbio.data.curation.fineweb2`). Both run as datatrove pipelines
with their rejects written, as in the curation stage. It fails unless every passage gets the same
outcome from both (kept, or dropped by the same filter for the same reason), then prints each
round's docs/s in wall and in CPU time, and the median ratios. Each round starts the shared
tokenizer with an empty spaCy cache, as a new rank does: over a longer run the ratio only grows.

``--mix-pack-docs N`` instead measures the mix_pack stage alone on a synthetic curated
folder of N short documents (four groups, articles with the paper's upsampling factors):
peak RSS of a fresh process running the stage, over its RSS once imports are done, and time.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List, Tuple

from mcbio.config.curation import FineWeb2Config, SourceConfig
from mcbio.data.curation.chain import fineweb2_steps
from mcbio.data.curation.dedup import WindowDeduplicator
from mcbio.data.curation.fineweb2 import chain_word_tokenizer
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


def fineweb2_outcomes(steps: List, texts: List[str], rejects_dir: str) -> Tuple[Dict[str, str], Tuple[float, float]]:
    """Run ``steps`` as one datatrove pipeline on ``texts`` (document ids "0", "1"...) with their
    rejects under ``rejects_dir``: each document's outcome ("kept", or the ``filter_reason`` its
    rejects writer saved) and the pipeline's (wall, CPU) seconds."""
    from datatrove.data import Document

    pipeline = iter([Document(text=t, id=str(i), metadata={"curate": True}) for i, t in enumerate(texts)])
    for step in steps:
        pipeline = step.run(pipeline, 0, 1)
    t0, cpu0 = time.perf_counter(), time.process_time()
    outcomes = {doc.id: "kept" for doc in pipeline}
    seconds = (time.perf_counter() - t0, time.process_time() - cpu0)
    for path in sorted(Path(rejects_dir).glob("*/*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                outcomes[record["id"]] = record["metadata"]["filter_reason"]
    missing = len(texts) - len(outcomes)
    if missing:
        raise RuntimeError(f"{missing} documents were neither kept nor saved as rejects under {rejects_dir}")
    return outcomes, seconds


def bench_fineweb2(passages: List[str], rounds: int) -> None:
    """datatrove's FineWeb-2 chain vs the pipeline's, side by side: same outcomes, docs/s of each."""
    cfg, counter = FineWeb2Config(), TokenCounter()
    names = {True: "datatrove", False: "shared"}
    with tempfile.TemporaryDirectory() as tmp:
        def run(reference: bool, tag: str) -> Tuple[Dict[str, str], Tuple[float, float]]:
            rejects = os.path.join(tmp, f"{tag}-{names[reference]}")
            return fineweb2_outcomes(fineweb2_steps(cfg, counter, rejects, reference=reference), passages, rejects)

        # Loads both spaCy pipelines and ftfy's tables, untimed.
        for reference in names:
            run(reference, "warmup")
        print(f"\nFineWeb-2 chain on {len(passages)} passages: datatrove vs shared tokenisation, same outcomes")
        ratios: Dict[str, List[float]] = {"wall": [], "cpu": []}
        for r in range(rounds):
            # Every round starts the shared tokenizer on an empty spaCy cache, as a new rank does.
            shared = chain_word_tokenizer(cfg.language)
            shared.restart()
            shared.tokenizer  # the fresh pipeline loads here, untimed (once per 10,000 texts in a run)
            seconds, outcomes = {}, {}
            for reference in ((True, False) if r % 2 == 0 else (False, True)):
                outcomes[reference], seconds[reference] = run(reference, f"round{r}")
            differ = [i for i in outcomes[True] if outcomes[True][i] != outcomes[False].get(i)]
            if differ:
                raise AssertionError(f"round {r}: {len(differ)} passages differ, e.g. passage {differ[0]}: "
                                     f"datatrove {outcomes[True][differ[0]]!r}, shared {outcomes[False][differ[0]]!r}")
            line = f"  round {r}:"
            for k, clock in enumerate(ratios):
                ratios[clock].append(seconds[True][k] / seconds[False][k])
                line += (f"  {clock} datatrove {len(passages) / seconds[True][k]:6.1f} docs/s, shared "
                         f"{len(passages) / seconds[False][k]:6.1f} docs/s: {ratios[clock][-1]:.2f}x ")
            print(line)
        counts = Counter(outcomes[True].values())
        kept = counts.pop("kept", 0)
        print(f"  identical outcomes in every round: {kept} kept, dropped {dict(sorted(counts.items()))}")
        print(f"  ratio, median of {rounds} rounds: {statistics.median(ratios['wall']):.2f}x in wall time, "
              f"{statistics.median(ratios['cpu']):.2f}x in CPU time (this process's: steadier on a shared machine)")


MIX_GROUP_DOCS = {"articles": 0.55, "ontobook": 0.25, "emea": 0.12, "e3c": 0.08}
ARTICLE_FACTORS = (4.3, 8.5, 12.8, 21.3, 34.1)


def write_synthetic_curated(folder: Path, n_docs: int, words_per_doc: int, seed: int = 0) -> int:
    """curated/<group>/0000k.jsonl.gz as the select stage writes them; returns the raw token count."""
    import numpy as np

    rng = np.random.default_rng(seed)
    vocab = [f"mot{i}" for i in range(5000)] + ["patient", "traitement", "diagnostic", "la", "de", "et", "le"]
    total = 0
    for group, frac in MIX_GROUP_DOCS.items():
        n = int(n_docs * frac)
        (folder / group).mkdir(parents=True, exist_ok=True)
        for part in range(2):
            with gzip.open(folder / group / f"{part:05d}.jsonl.gz", "wt", encoding="utf-8") as out:
                for i in range(part, n, 2):
                    k = int(rng.integers(words_per_doc // 2, words_per_doc * 3 // 2))
                    text = " ".join(vocab[j] for j in rng.integers(0, len(vocab), k)) + "."
                    factor = float(ARTICLE_FACTORS[i % len(ARTICLE_FACTORS)]) if group == "articles" else 1.0
                    meta = {"mix_group": group, "n_tokens": k + 1, "upsample_factor": factor}
                    out.write(json.dumps({"text": text, "id": f"{group}/{i}", "metadata": meta}) + "\n")
                    total += k + 1
    return total


def _mix_pack_child(curated: str, out_dir: str, tokenizer: str, total_tokens: int, queue) -> None:
    import mcbio.data.shards  # noqa: F401  (the stage's imports count as the baseline, not as its memory)
    import mcbio.data.tokenizer  # noqa: F401
    from mcbio.config.curation import MixConfig, PackConfig
    from mcbio.data.curation.stages import MixPackStep

    step = MixPackStep(curated, out_dir, MixConfig(total_tokens=total_tokens),
                       PackConfig(tokenizer=tokenizer, seq_len=512, sequences_per_shard=1024))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    report = step.mix_and_pack()
    queue.put({"seconds": time.perf_counter() - t0, "base_kb": base,
               "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               "copies": sum(g["copies"] for g in report["groups"].values()),
               "tokens_packed": report["tokens_packed"],
               "shares": {g: round(v["share_mixed"], 4) for g, v in report["groups"].items()}})


def bench_mix_pack(n_docs: int, words_per_doc: int, mix_ratio: float) -> None:
    import multiprocessing as mp

    from mcbio.data.tokenizer import train_bpe_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        curated = Path(tmp) / "curated"
        raw = write_synthetic_curated(curated, n_docs, words_per_doc)
        sample = (json.loads(line)["text"] for line in gzip.open(curated / "articles" / "00000.jsonl.gz", "rt"))
        tok = train_bpe_tokenizer((t for _, t in zip(range(2000), sample)), vocab_size=8000)
        tok.save_pretrained(Path(tmp) / "tok")
        total = int(raw * mix_ratio)
        print(f"mix_pack on {n_docs} synthetic documents, {raw} raw tokens, mix target {total} tokens")
        ctx = mp.get_context("spawn")  # a fresh interpreter: its peak RSS is the stage's alone
        queue = ctx.Queue()
        proc = ctx.Process(target=_mix_pack_child, args=(str(curated), str(Path(tmp) / "out"),
                                                           str(Path(tmp) / "tok"), total, queue))
        proc.start()
        res = queue.get()
        proc.join()
    print(f"  time               {res['seconds']:8.1f} s  ({res['copies'] / res['seconds']:.0f} copies/s)")
    print(f"  peak RSS           {res['peak_kb'] / 1024:8.1f} MiB")
    print(f"  RSS after imports  {res['base_kb'] / 1024:8.1f} MiB")
    print(f"  stage's own peak   {(res['peak_kb'] - res['base_kb']) / 1024:8.1f} MiB")
    print(f"  copies {res['copies']}, tokens packed {res['tokens_packed']}, shares {res['shares']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("MCBIO_DATA", "../shared/data"))
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3, help="side-by-side runs of the FineWeb-2 chain")
    ap.add_argument("--mix-pack-docs", type=int, default=0, help="only benchmark mix_pack on this many synthetic docs")
    ap.add_argument("--mix-pack-words", type=int, default=40, help="mean words per synthetic document")
    ap.add_argument("--mix-pack-ratio", type=float, default=2.0, help="mix target = this x the raw tokens")
    args = ap.parse_args()
    if args.mix_pack_docs:
        bench_mix_pack(args.mix_pack_docs, args.mix_pack_words, args.mix_pack_ratio)
        return
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
    for step in [PassageFilter(30, 600, 0.6, counter), JaccardDedup(0.8, 5, 1, counter)]:
        timed(step.name, lambda: list(step.run(iter(fresh()), 0, 1)), len(passages), n_tok)
    bench_fineweb2(passages, args.rounds)

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
