"""Extraction fidelity of a real LLM on the paper's appendix-E examples (Table 8, measured beside the paper's).

One element of the report launcher, run before the report: the curation's own extraction prompt,
schema and parser, through the LLM layer, on each example's source text; the passages are scored
with the measure the curation and the paper use (character overlap with the source after
normalisation). It writes ``<results>/fidelity/appendix_e.json``, which the report reads: the
report itself never runs an LLM.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from mcbio.llm.config import LLMConfig

log = logging.getLogger(__name__)

RESULT_NAME = "appendix_e.json"


def fidelity_path(results_dir: str | Path) -> Path:
    return Path(results_dir) / "fidelity" / RESULT_NAME


@dataclass(frozen=True)
class AppendixFidelityJob:
    llm: LLMConfig
    examples: str  # the paper's fidelity_examples.json
    out_path: str
    prompt: str
    max_passage_words: int
    # The engine's log: the run directory, not the results store (which is committed).
    log_dir: str

    def settings(self) -> dict:
        """What the measurement depends on (the result is reused while these are the same)."""
        return {"llm": asdict(self.llm), "prompt": self.prompt, "max_passage_words": self.max_passage_words}


def fidelity_done(job: AppendixFidelityJob) -> bool:
    from mcbio.files import json_marker_matches

    # Compared as JSON reads them back (tuples become lists).
    return json_marker_matches(job.out_path, settings=json.loads(json.dumps(job.settings())))


def measure_appendix_fidelity(job: AppendixFidelityJob) -> dict:
    from mcbio.data.curation.fidelity import character_overlap
    from mcbio.data.curation.llm_tasks import EXTRACT_TASK, EXTRACTION_SCHEMA, extraction_prompt, parse_extraction
    from mcbio.files import write_json_atomic
    from mcbio.llm import build_backend, generate_structured, validation_counts

    examples = json.loads(Path(job.examples).read_text(encoding="utf-8"))
    backend = build_backend(job.llm, log_dir=Path(job.log_dir))
    try:
        results = generate_structured(
            backend, [(extraction_prompt(e["source"], job.max_passage_words, job.prompt), parse_extraction)
                      for e in examples],
            EXTRACTION_SCHEMA if job.llm.guided_json else None, job.llm.max_retries, task=EXTRACT_TASK)
    finally:
        backend.close()
    rows = []
    for example, res in zip(examples, results):
        passages = res.value or []
        rows.append({
            "name": example["name"],
            # The paper's own extraction, same measure (what its appendix shows).
            "paper_overlap": round(character_overlap(example["extracted"], example["source"]), 4),
            "overlap": round(character_overlap("\n\n".join(passages), example["source"]), 4) if passages else 0.0,
            "passage_overlaps": [round(character_overlap(p, example["source"]), 4) for p in passages],
            "passages": passages, "error": res.error, "attempts": res.attempts,
        })
        log.info("%s: %d passage(s), overlap %.3f (paper's extraction %.3f)", example["name"], len(passages),
                 rows[-1]["overlap"], rows[-1]["paper_overlap"])
    result = {"backend": job.llm.backend, "model": job.llm.model, "settings": job.settings(), "examples": rows,
              "validation": validation_counts(results), "llm": backend.usage.as_dict()}
    write_json_atomic(job.out_path, result)
    return result


def describe(result: dict) -> str:
    return ", ".join(f"{r['name']} {100 * r['overlap']:.1f} % (paper {100 * r['paper_overlap']:.1f} %)"
                     for r in result.get("examples", []))
