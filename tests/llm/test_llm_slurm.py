"""The curation experiment's smoke preset with llm.backend=vllm, through the launcher, on the one-node Slurm.

The passages stage is the LLM stage: its array element starts vLLM's CPU engine from the LLM
environment, labels the passages (split by rules, as in the laptop study) with SmolLM2-135M-Instruct,
and stops it; the curation statistics then carry the backend, tokens, time and valid-answer share.
Extraction by the real model runs in test_real_llm.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from pathlib import Path

import pytest

from mcbio.cluster.launcher import launch
from mcbio.config.curation import CurationRunConfig
from mcbio.pipelines.curation import plan_curation

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.llm, pytest.mark.slurm, pytest.mark.slow, pytest.mark.shared_data]


def test_curation_smoke_with_vllm_on_slurm(shared_data, tmp_path, llm_python, llm_model):
    e3c = shared_data / "e3c_fr_unlabeled"
    out = Path(os.environ.get("MCBIO_SLURM_TMP", tmp_path)) / "vllm_run"
    args = ["preset=smoke", f"out_dir={out}", "cluster=slurm", "resources.profile=local_slurm",
            "llm.backend=vllm", "llm.model=smollm2-135m-instruct", f"llm.env={llm_python}", "llm.max_new_tokens=768",
            # As the laptop study: rules split the passages (a 135M model answers extraction with the
            # prompt's own example passages, which the passage filter drops), the LLM labels them.
            "extraction.llm.backend=rules",
            f"sources.journal.path={e3c / 'layer3_journal'}", "sources.journal.limit=3",
            f"sources.leaflets.path={e3c / 'layer3_leaflets_sample'}", "sources.leaflets.limit=1",
            f"sources.e3c_raw.path={e3c / 'layer3_journal'}", "sources.e3c_raw.limit=1",
            "annotation.llm_sample_fraction=1.0", "pack.tokenizer_vocab_size=400", "pack.seq_len=128",
            # One element holds the engine: both cores and room for vLLM (the profile's 3 GB is for tiny jobs).
            "executor.tasks=1", "executor.llm_needs.cpus_per_task=2", "executor.llm_needs.mem_gb=10",
            "executor.llm_needs.timeout_min=40", "resources.cpus_per_task=1", "resources.timeout_min=10"]
    assert launch(CurationRunConfig, REPO / "experiments/curation/config.yaml", plan_curation, args) == 0
    stats = json.loads((out / "curation_stats.json").read_text())
    assert stats["llm_backend"] == "vllm" and stats["extraction_backend"] == "rules"
    u = stats["llm"]["llm_annotate"]
    assert u["backend"] == "vllm" and u["model"] == "smollm2-135m-instruct"
    assert u["prompts"] > 0 and u["prompt_tokens"] > 0 and u["generated_tokens"] > 0 and u["tokens_per_s"] > 0
    assert u["engine_start_s"] > 0
    assert stats["llm"]["llm_extract"]["backend"] == "rules"
    # The grammar makes the labels schema-valid.
    assert stats["llm"]["llm_annotate"]["valid_first_try_share"] >= 0.95
    steps = {s["step"]: s for stage in stats["stages"] for s in stage["steps"]}
    # The uncurated source (e3c_raw) passes through the stage unlabelled; the curated passages are all labelled.
    labelled = [d for f in sorted((out / "passages").glob("*.jsonl.gz")) for d in map(json.loads, gzip.open(f, "rt"))
                if d["metadata"]["mcbio_source"] != "e3c_raw"]
    assert labelled and all(d["metadata"].get("labels_by") == "llm:vllm" for d in labelled)
    assert steps["llm_annotate"]["kept"] == len(labelled)
    # The engine's log is kept beside the stage's logs, and no engine outlives its job.
    assert list((out / "logs" / "llm").glob("vllm-engine-*.log"))
    assert subprocess.run(["pgrep", "-f", "vllm.entrypoints.openai.api_server"], capture_output=True).stdout == b""
    assert (out / "shards" / "index.json").is_file()
