"""Generated tokens/s of the LLM backends on the same prompts: vllm, llamacpp, transformers (one run).

The prompts are the curation's type/quality annotation of 48 real French passages (heads of
E3C case reports, as in the `llm` tests), answered by the same prepared model
(SmolLM2-135M-Instruct) through ``generate_structured`` with no retry, so every backend
generates once per prompt. For each backend: engine start, generation time, prompt and
generated tokens, generated tokens/s, share of schema-valid answers; then the ratios.

    python benchmarks/llm_throughput.py --data ../shared/data            # all three (~6 min on 2 cores)
    python benchmarks/llm_throughput.py --backends llamacpp transformers --json llm.json

Needs the LLM environment and the prepared model: `python -m mcbio.llm setup`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def measure(backend_name: str, prompts: list[str], args) -> dict:
    from mcbio.data.curation.llm_tasks import ANNOTATION_SCHEMA, parse_annotation
    from mcbio.llm import LLMConfig, build_backend, generate_structured, validation_counts

    cfg = LLMConfig(backend=backend_name, model=args.model, max_new_tokens=args.max_new_tokens,
                    batch_size=args.batch_size, max_retries=0)
    started = time.time()
    backend = build_backend(cfg)
    load_s = time.time() - started  # the in-process model loads here; a server engine starts on first use
    try:
        results = generate_structured(backend, [(p, parse_annotation) for p in prompts], ANNOTATION_SCHEMA, 0,
                                      task="curation_annotate")
    finally:
        backend.close()
    u = backend.usage
    counts = validation_counts(results)
    return {"backend": backend_name, "prompts": len(prompts), "start_s": round(load_s + u.engine_start_s, 1),
            "seconds": round(u.seconds, 1), "prompt_tokens": u.prompt_tokens, "generated_tokens": u.generated_tokens,
            "tokens_per_s": round(u.tokens_per_s, 1), "valid_share": round(counts["valid_first_try"] / len(prompts), 3)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("MCBIO_DATA", "../shared/data"))
    parser.add_argument("--backends", nargs="+", default=["vllm", "llamacpp", "transformers"],
                        choices=["vllm", "llamacpp", "transformers"])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16, help="concurrent requests / transformers batch")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)

    from mcbio.data.curation.llm_tasks import annotation_prompt
    from mcbio.data.curation.samples import e3c_passages

    prompts = [annotation_prompt(p) for p in e3c_passages(args.data, args.prompts)]
    print(f"{len(prompts)} annotation prompts, model {args.model}, max {args.max_new_tokens} new tokens, "
          f"batch {args.batch_size}, {len(os.sched_getaffinity(0))} CPU cores", flush=True)
    rows = []
    for name in args.backends:
        print(f"-- {name} ...", flush=True)
        rows.append(measure(name, prompts, args))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'backend':14s} {'start s':>8s} {'gen s':>8s} {'prompt tok':>11s} {'gen tok':>8s} {'tok/s':>8s} "
          f"{'valid':>6s}")
    for r in rows:
        print(f"{r['backend']:14s} {r['start_s']:8.1f} {r['seconds']:8.1f} {r['prompt_tokens']:11d} "
              f"{r['generated_tokens']:8d} {r['tokens_per_s']:8.1f} {100 * r['valid_share']:5.1f}%")
    base = next((r for r in rows if r["backend"] == "transformers"), rows[-1])
    if base["tokens_per_s"]:
        print("ratios (generated tokens/s) vs " + base["backend"] + ": " + ", ".join(
            f"{r['backend']} {r['tokens_per_s'] / base['tokens_per_s']:.2f}x" for r in rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
