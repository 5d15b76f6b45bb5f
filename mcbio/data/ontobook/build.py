"""One shard of OntoBook (walks -> prompts -> answers -> verified documents) and the merge.

Shard files are written atomically and a shard whose stats file exists is not redone, so
a requeued job continues where it stopped. Document ids are the walk's key, so the merge
drops walks that two shards happened to draw alike.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from tqdm.auto import tqdm

from mcbio.data.ontobook.graph import OntologyGraph
from mcbio.data.ontobook.rephrase import (
    ANSWER_SCHEMA,
    TASK,
    build_prompt,
    failure_reason,
    make_parser,
)
from mcbio.data.ontobook.verbalise import verbalise_payload, walk_payload
from mcbio.data.ontobook.walks import Walk, WalkCounts, generate_walks
from mcbio.files import write_json_atomic, write_jsonl_atomic
from mcbio.jsonl import iter_jsonl
from mcbio.llm import generate_structured, load_prompt, validation_counts
from mcbio.llm.accounting import add_counters, llm_summary
from mcbio.seeding import stable_int

log = logging.getLogger(__name__)

SHARD_DIR = "shards"
DOCUMENTS = "documents/ontobook.jsonl"
STATS_DIR = "stats"


# --------------------------------------------------------------------------- files


def shard_paths(out_dir: Path, ontology: str, index: int) -> Tuple[Path, Path]:
    stem = Path(out_dir) / SHARD_DIR / f"{ontology}-{index:04d}"
    return stem.with_suffix(".jsonl"), stem.with_suffix(".stats.json")


# --------------------------------------------------------------------------- walks


def split_evenly(total: int, parts: int, index: int) -> int:
    """Share ``index`` of ``total`` split into ``parts`` (the first shares take the remainder)."""
    return total // parts + (1 if index < total % parts else 0)


def type_quotas(n_walks: int, shares: Dict[str, float]) -> Dict[str, int]:
    """Walks per type proportional to shares, rounded by largest remainder (sums to n_walks)."""
    total = sum(shares.values())
    if total <= 0:
        raise ValueError(f"walk type shares must sum to a positive value, got {shares}")
    exact = {k: n_walks * v / total for k, v in shares.items()}
    quotas = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: (quotas[k] - exact[k], k))[: n_walks - sum(quotas.values())]:
        quotas[k] += 1
    return quotas


def start_nodes(graph: OntologyGraph, walk_type) -> List[str]:
    nodes = graph.nodes(walk_type.start_kinds)
    if walk_type.start_requires_any:
        nodes = [n for n in nodes if any(graph.neighbours(n, t) for t in walk_type.start_requires_any)]
    return nodes


def shard_walks(
    graph: OntologyGraph, onto_cfg, walk_cfg, shard_index: int, progress: bool = True
) -> Tuple[List[Tuple[Walk, dict, str]], Dict[str, dict]]:
    """The shard's walks as (walk, payload, verbalised text), and counts per walk type."""
    quota = split_evenly(onto_cfg.walks, onto_cfg.shards, shard_index)
    quotas = type_quotas(quota, {k: v.share for k, v in onto_cfg.walk_types.items()})
    seen: set = set()
    out: List[Tuple[Walk, dict, str]] = []
    counts: Dict[str, dict] = {}
    bar = tqdm(total=quota, desc=f"{graph.name}[{shard_index}] walks", unit="walk", disable=not progress)
    for name, wt in onto_cfg.walk_types.items():
        if quotas[name] == 0:
            continue
        rng = random.Random(stable_int(walk_cfg.seed, f"{graph.name}:{shard_index}:{name}"))
        wc = WalkCounts()
        payloads: Dict[str, dict] = {}

        def text_of(walk: Walk) -> str:
            payloads[walk.key] = walk_payload(walk, graph)
            return verbalise_payload(payloads[walk.key])

        for walk, text in generate_walks(
            graph, name, wt.edge_weights, start_nodes(graph, wt), quotas[name], rng,
            walk_cfg.min_steps, walk_cfg.max_steps, walk_cfg.min_chars, text_of,
            walk_cfg.backtrack, walk_cfg.max_attempts_per_walk, seen, wc,
        ):
            out.append((walk, payloads.pop(walk.key), text))
            bar.update(1)
        if wc.kept < quotas[name]:
            log.warning("%s/%s shard %d: %d walks of %d asked (attempt budget spent: %s)",
                        graph.name, name, shard_index, wc.kept, quotas[name], wc.as_dict())
        counts[name] = wc.as_dict()
    bar.close()
    return out, counts


# --------------------------------------------------------------------------- rephrasing


@dataclass
class ShardResult:
    documents: List[dict]
    failures: Counter
    attempts: int
    # ``llm/*`` counters: tokens, time and answer validity (mcbio.llm.accounting).
    llm: Dict[str, float] = field(default_factory=dict)


def rephrase_walks(
    items: List[Tuple[Walk, dict, str]],
    graph: OntologyGraph,
    backend,
    rephrase_cfg,
    progress: bool = True,
) -> ShardResult:
    """Prompts -> validated answers; unfaithful answers are retried, then counted and dropped."""
    import dataclasses

    from mcbio.llm.accounting import llm_counters

    docs: List[dict] = []
    failures: Counter = Counter()
    attempts = 0
    llm: Dict[str, float] = {}
    chunk = max(1, rephrase_cfg.chunk_size)
    schema = ANSWER_SCHEMA if rephrase_cfg.llm.guided_json else None
    template = load_prompt(rephrase_cfg.prompt)
    bar = tqdm(total=len(items), desc=f"{graph.name} rephrase", unit="walk", disable=not progress)
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        # Each walk's answer is checked against that walk: its prompt carries its own verifier.
        requests = [(build_prompt(payload, template),
                     make_parser(payload, graph.code_regex, rephrase_cfg.verify_relations))
                    for _, payload, _ in part]
        before = dataclasses.replace(backend.usage)
        results = generate_structured(backend, requests, schema, rephrase_cfg.llm.max_retries, task=TASK)
        add_counters(llm, llm_counters(backend.usage.minus(before), validation_counts(results)))
        for (walk, payload, _), res in zip(part, results):
            attempts += res.attempts
            if not res.ok:
                failures[failure_reason(res.error)] += 1
                continue
            codes = [n["code"] for n in payload["nodes"].values() if n["code"]]
            docs.append({
                "id": f"ontobook-{walk.ontology}-{walk.key}",
                "text": res.value.text,
                "source": "ontobook",
                "ontology": walk.ontology,
                "codes": codes,
                "walk_type": walk.walk_type,
                "steps": len(walk.steps),
            })
        bar.update(len(part))
    bar.close()
    return ShardResult(docs, failures, attempts, llm)


# --------------------------------------------------------------------------- shard + merge

CHARS_BIN = 250


def _histogram(values: Iterable[int], bin_width: int = 1) -> Dict[str, int]:
    hist = Counter((v // bin_width) * bin_width for v in values)
    return {str(k): hist[k] for k in sorted(hist)}


def run_shard(
    name: str, graph: OntologyGraph, onto_cfg, walk_cfg, rephrase_cfg, backend, out_dir: Path,
    shard_index: int, progress: bool = True,
) -> dict:
    """Walks + rephrasing of one shard; writes its documents and stats, returns the stats."""
    docs_path, stats_path = shard_paths(out_dir, name, shard_index)
    if stats_path.is_file():
        log.info("%s shard %d already done (%s): skipped", name, shard_index, stats_path)
        return json.loads(stats_path.read_text(encoding="utf-8"))
    items, counts = shard_walks(graph, onto_cfg, walk_cfg, shard_index, progress)
    result = rephrase_walks(items, graph, backend, rephrase_cfg, progress)
    write_jsonl_atomic(docs_path, result.documents)
    stats = {
        "ontology": name,
        "shard": shard_index,
        "walks_asked": split_evenly(onto_cfg.walks, onto_cfg.shards, shard_index),
        "walks": len(items),
        "walk_types": counts,
        "kept": len(result.documents),
        "dropped": dict(sorted(result.failures.items())),
        "llm_attempts": result.attempts,
        "backend": backend.name,
        "llm": result.llm,
        "steps_hist": _histogram(len(w.steps) for w, _, _ in items),
        "walk_chars_hist": _histogram((len(t) for _, _, t in items), CHARS_BIN),
    }
    write_json_atomic(stats_path, stats)
    log.info("%s shard %d: %d walks, %d kept, dropped %s", name, shard_index, len(items), len(result.documents),
             stats["dropped"])
    return stats


def make_token_counter(tokenizer: Optional[str]):
    """Token count of a text: a local tokenizer folder when given, else whitespace words."""
    if not tokenizer:
        return "whitespace_words", lambda text: len(text.split())
    from transformers import AutoTokenizer

    path = Path(tokenizer)
    if not path.is_dir():
        raise FileNotFoundError(f"output.tokenizer: tokenizer folder not found: {path}")
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return str(path), lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


def _quantiles_from_hist(hist: Dict[str, int], qs=(0.0, 0.1, 0.5, 0.9, 1.0)) -> Dict[str, int]:
    """Quantiles of a histogram (bin lower edges), enough to report a length distribution."""
    items = sorted((int(k), v) for k, v in hist.items())
    total = sum(v for _, v in items)
    out = {}
    for q in qs:
        target, acc = q * (total - 1), 0
        for value, count in items:
            acc += count
            if acc - 1 >= target:
                out[f"p{int(q * 100)}"] = value
                break
    return out


def merge_shards(out_dir: Path, plan: Dict[str, int], tokenizer: Optional[str] = None, progress: bool = True) -> dict:
    """Shard files -> one documents file (deduplicated by walk) and per-ontology statistics."""
    out_dir = Path(out_dir)
    method, count_tokens = make_token_counter(tokenizer)
    seen: set = set()
    per: Dict[str, dict] = {}

    def rows():
        for name, shards in plan.items():
            s = per.setdefault(name, {
                "ontology": name, "shards": shards, "walks_asked": 0, "walks": 0, "kept": 0,
                "duplicates_across_shards": 0, "tokens": 0, "characters": 0, "dropped": Counter(),
                "walk_types": {}, "steps_hist": Counter(), "walk_chars_hist": Counter(), "llm_attempts": 0,
                "llm": {}, "backend": None,
            })
            for index in tqdm(range(shards), desc=f"merge {name}", disable=not progress):
                docs_path, stats_path = shard_paths(out_dir, name, index)
                if not stats_path.is_file():
                    raise FileNotFoundError(f"shard {name}-{index} is not finished: {stats_path} missing")
                st = json.loads(stats_path.read_text(encoding="utf-8"))
                for key in ("walks_asked", "walks", "llm_attempts"):
                    s[key] += st[key]
                add_counters(s["llm"], st.get("llm", {}))
                s["backend"] = st.get("backend", s["backend"])
                s["dropped"].update(st["dropped"])
                s["steps_hist"].update(st["steps_hist"])
                s["walk_chars_hist"].update(st["walk_chars_hist"])
                for wt, c in st["walk_types"].items():
                    agg = s["walk_types"].setdefault(wt, Counter())
                    agg.update(c)
                for _, doc in iter_jsonl(docs_path):
                    if doc["id"] in seen:
                        s["duplicates_across_shards"] += 1
                        continue
                    seen.add(doc["id"])
                    s["kept"] += 1
                    s["tokens"] += count_tokens(doc["text"])
                    s["characters"] += len(doc["text"])
                    yield doc

    n_docs = write_jsonl_atomic(out_dir / DOCUMENTS, rows())
    summary = {"documents": n_docs, "path": str(out_dir / DOCUMENTS), "token_counter": method, "ontologies": {}}
    for name, s in per.items():
        s["dropped"] = dict(sorted(s["dropped"].items()))
        s["walk_types"] = {k: dict(v) for k, v in s["walk_types"].items()}
        s["steps_hist"] = {k: s["steps_hist"][k] for k in sorted(s["steps_hist"], key=int)}
        s["walk_chars_hist"] = {k: s["walk_chars_hist"][k] for k in sorted(s["walk_chars_hist"], key=int)}
        s["walk_chars_quantiles"] = _quantiles_from_hist(s["walk_chars_hist"])
        s["steps_quantiles"] = _quantiles_from_hist(s["steps_hist"])
        s["token_counter"] = method
        s["llm"] = llm_summary(s["llm"], s["backend"])
        write_json_atomic(out_dir / STATS_DIR / f"{name}.json", s)
        summary["ontologies"][name] = {k: s[k] for k in ("walks", "kept", "tokens", "dropped", "llm")}
    write_json_atomic(out_dir / STATS_DIR / "summary.json", summary)
    return summary
