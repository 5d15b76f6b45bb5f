"""The curation pipeline end to end on the real E3C text: locally, and as Slurm job arrays."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcbio.cluster.launcher import launch
from mcbio.cluster.registry import JobRegistry
from mcbio.config.curation import CurationRunConfig
from mcbio.data.shards import PackedShards
from mcbio.pipelines.curation import plan_curation

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "experiments/curation/config.yaml"


def small_args(shared_data: Path, out_dir: Path, *extra: str) -> list[str]:
    e3c = shared_data / "e3c_fr_unlabeled"
    return [
        "preset=smoke", f"out_dir={out_dir}",
        f"sources.journal.path={e3c / 'layer3_journal'}", "sources.journal.limit=15",
        f"sources.leaflets.path={e3c / 'layer3_leaflets_sample'}", "sources.leaflets.limit=2",
        f"sources.e3c_raw.path={e3c / 'layer3_journal'}", "sources.e3c_raw.limit=3",
        "annotation.classifier.min_labelled=5", "pack.tokenizer_vocab_size=400", "pack.seq_len=128",
        "executor.tasks=2", *extra,
    ]


def run_curation(args: list[str]) -> dict:
    """The launcher, as a user runs it; the summary is the stats element's return value."""
    assert launch(CurationRunConfig, CONFIG, plan_curation, args) == 0
    out = Path(next(a.split("=", 1)[1] for a in args if a.startswith("out_dir=")))
    stats = json.loads((out / "curation_stats.json").read_text())
    return {"shards": stats["pack"]["shards_dir"], "sequences": stats["pack"].get("sequences")}


def check_outputs(out_dir: Path, summary: dict) -> dict:
    stats = json.loads((out_dir / "curation_stats.json").read_text())
    steps = {s["step"]: s for stage in stats["stages"] for s in stage["steps"]}
    # Every curated step saw documents and accounted for all of them.
    for name in ("passage_filter", "jaccard_dedup", "type_filter", "quality_upsample"):
        s = steps[name]
        assert s["in"] > 0 and s["in"] == s["kept"] + s["dropped_total"], name
    assert steps["type_filter"]["dropped"].get("type:drug_information", 0) > 0  # the leaflets
    # What each step dropped is saved under rejects/<step>/ by datatrove's exclusion writers.
    for name in ("segment", "llm_extract", "passage_filter", "jaccard_dedup", "llm_annotate", "type_filter",
                 "quality_upsample"):
        assert stats["rejects"].get(name, 0) == steps[name]["dropped_total"], name
    assert stats["rejects"]["type_filter"] > 0
    assert stats["fidelity"]["passages"] > 0 and stats["fidelity"][">=50%"] == 1.0
    assert stats["token_unit"] == "tokens:regex_estimate"
    shards = PackedShards(summary["shards"])
    assert len(shards) == summary["sequences"] > 0
    assert set(stats["mix"]["groups"]) == {"articles", "e3c"}
    assert (out_dir / "tokenizer" / "tokenizer.json").is_file()
    return stats


def stats_articles(stats: dict) -> int:
    step = next(s for st in stats["stages"] for s in st["steps"] if s["step"] == "quality_upsample")
    return int(sum(v for k, v in step["extra"].items() if k.startswith("articles_factor/")))


@pytest.mark.shared_data
def test_curation_end_to_end_local(shared_data, tmp_path):
    args = small_args(shared_data, tmp_path / "run")
    summary = run_curation(args)
    stats = check_outputs(tmp_path / "run", summary)
    assert stats["classifier"]["labelled"] > 0  # half the passages labelled by the distilled classifier
    # The report reads this statistics file as written (producer/consumer contract).
    from mcbio.results.curation_tables import fidelity_table, load_curation_stats, mix_table

    report_stats = load_curation_stats(tmp_path / "run" / "curation_stats.json")
    fidelity = fidelity_table(report_stats, "Fidelity", "tab:fid")
    assert f"All & {stats['fidelity']['passages']} & 100.0" in fidelity
    mix = mix_table(report_stats["mix"], "Mix", "tab:mix", planned=False)
    assert "articles" in mix and "e3c" in mix
    assert sum(report_stats["upsampling_articles"].values()) == stats_articles(stats)
    # A rerun skips the finished tasks and gives the same shards.
    first = (tmp_path / "run" / "shards" / "index.json").read_text()
    run_curation(args)
    assert (tmp_path / "run" / "shards" / "index.json").read_text() == first


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.shared_data
def test_curation_as_slurm_job_arrays(shared_data, tmp_path):
    import os

    import subprocess

    out = Path(os.environ.get("MCBIO_SLURM_TMP", tmp_path)) / "slurm_run"
    summary = run_curation(small_args(shared_data, out, "cluster=slurm", "resources.profile=local_slurm",
                                      "resources.cpus_per_task=1", "resources.timeout_min=10"))
    stats = check_outputs(out, summary)
    passages = next(s for s in stats["stages"] if s["stage"] == "passages")
    assert passages["tasks"] == 2  # one array of two tasks
    # Every stage is one array submitted by the launcher itself, chained to the previous by afterok:
    # no job submits or waits for another.
    jobs = JobRegistry(out).read()
    arrays = {}
    for key, entry in jobs.items():
        arrays.setdefault(entry["stage"], set()).add(entry["job_id"].split("_")[0])
    assert list(arrays) == ["passages", "distil", "select", "mix_pack", "stats"]
    assert all(len(ids) == 1 for ids in arrays.values())
    order = [next(iter(arrays[s])) for s in arrays]
    info = {}
    for array in order:
        line = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,Submit,Start,End,State", "-j", array],
                              capture_output=True, text=True).stdout.split()
        info[array] = [l.split("|") for l in line]
    # All arrays were submitted before the first one ended (from the login node, not by a driver job).
    first_end = max(row[3] for row in info[order[0]])
    assert all(row[1] <= first_end for array in order for row in info[array])
    # Each stage started only after the previous one ended.
    for prev, nxt in zip(order, order[1:]):
        assert min(row[2] for row in info[nxt]) >= max(row[3] for row in info[prev])
    assert {row[4] for array in order for row in info[array]} == {"COMPLETED"}
