"""What an LLM step cost and how its answers fared, as flat counters that add up across batches and ranks.

A step adds :func:`llm_counters` of each batch to its statistics (datatrove's ``stat_update``
for the curation, a shard's stats for OntoBook); :func:`llm_summary` turns the summed counters
into the report's figures: tokens/s, share of schema-valid answers at the first try, retries.
"""

from __future__ import annotations

from typing import Mapping

from mcbio.llm.backends import GenerationUsage

PREFIX = "llm/"
COUNTERS = ("prompts", "prompt_tokens", "generated_tokens", "seconds", "engine_start_s", "cpu_seconds",
            "gpu_seconds", "requests", "valid_first_try", "valid_after_retry", "invalid", "retries")


def job_gpus() -> int:
    """GPUs this job holds: CUDA_VISIBLE_DEVICES (as Slurm sets it), else Slurm's count, else none."""
    import os

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    return int(os.environ["SLURM_GPUS_ON_NODE"]) if os.environ.get("SLURM_GPUS_ON_NODE", "").isdigit() else 0


def llm_counters(usage: GenerationUsage, validation: Mapping[str, int]) -> dict[str, float]:
    """``llm/<counter>`` of one batch: the backend's usage over the batch and its validation counts, and the
    job's CPU- and GPU-seconds over that time (the engine holds the job's resources while it starts and answers)."""
    from mcbio.llm.server import job_cpus

    wall = usage.seconds + usage.engine_start_s
    values = {**usage.as_dict(), **validation, "cpu_seconds": wall * job_cpus(), "gpu_seconds": wall * job_gpus()}
    return {PREFIX + k: float(values.get(k, 0)) for k in COUNTERS}


def add_counters(total: dict[str, float], more: Mapping[str, float]) -> dict[str, float]:
    for k, v in more.items():
        if k.startswith(PREFIX):
            total[k] = total.get(k, 0.0) + float(v)
    return total


def llm_summary(counters: Mapping[str, float], backend: str, model: str | None = None) -> dict:
    """The report's view of summed ``llm/*`` counters (``{}`` when the step sent no prompt)."""
    c = {k: float(counters.get(PREFIX + k, 0.0)) for k in COUNTERS}
    if not c["prompts"]:
        return {}
    requests = c["requests"] or 1.0
    return {
        "backend": backend, "model": model,
        "requests": int(c["requests"]), "prompts": int(c["prompts"]),
        "prompt_tokens": int(c["prompt_tokens"]), "generated_tokens": int(c["generated_tokens"]),
        "seconds": round(c["seconds"], 2), "engine_start_s": round(c["engine_start_s"], 2),
        "cpu_hours": round(c["cpu_seconds"] / 3600, 4), "gpu_hours": round(c["gpu_seconds"] / 3600, 4),
        "tokens_per_s": round(c["generated_tokens"] / c["seconds"], 2) if c["seconds"] else 0.0,
        "valid_first_try_share": round(c["valid_first_try"] / requests, 4),
        "valid_share": round((c["valid_first_try"] + c["valid_after_retry"]) / requests, 4),
        "retries": int(c["retries"]), "invalid": int(c["invalid"]),
    }


def engine_steps(block: Mapping[str, Mapping] | None) -> dict[str, Mapping]:
    """The steps of a statistics' ``llm`` block that ran on an LLM engine: a ``rules`` step is counted
    (its prompts, its validation) but spent no LLM compute, so the compute and carbon lines leave it out."""
    return {step: u for step, u in (block or {}).items() if u.get("backend") != "rules"}
