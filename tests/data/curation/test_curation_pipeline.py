"""The curation pipeline end to end on the real E3C text: locally, and as Slurm job arrays."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcbio.config.curation import CurationRunConfig
from mcbio.config.loader import load_config
from mcbio.data.shards import PackedShards
from mcbio.pipelines.curation import run_curation_experiment

REPO = Path(__file__).resolve().parents[3]


def small_config(shared_data: Path, out_dir: Path, *extra: str) -> CurationRunConfig:
    e3c = shared_data / "e3c_fr_unlabeled"
    return load_config(CurationRunConfig, REPO / "experiments/curation/config.yaml", [
        "preset=smoke", f"out_dir={out_dir}",
        f"sources.journal.path={e3c / 'layer3_journal'}", "sources.journal.limit=15",
        f"sources.leaflets.path={e3c / 'layer3_leaflets_sample'}", "sources.leaflets.limit=2",
        f"sources.e3c_raw.path={e3c / 'layer3_journal'}", "sources.e3c_raw.limit=3",
        "annotation.classifier.min_labelled=5", "pack.tokenizer_vocab_size=400", "pack.seq_len=128",
        "executor.tasks=2", *extra,
    ])


def check_outputs(out_dir: Path, summary: dict) -> dict:
    stats = json.loads((out_dir / "curation_stats.json").read_text())
    steps = {s["step"]: s for stage in stats["stages"] for s in stage["steps"]}
    # Every curated step saw documents and accounted for all of them.
    for name in ("passage_filter", "jaccard_dedup", "type_filter", "quality_upsample"):
        s = steps[name]
        assert s["in"] > 0 and s["in"] == s["kept"] + s["dropped_total"], name
    assert steps["type_filter"]["dropped"].get("type:drug_information", 0) > 0  # the leaflets
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
    cfg = small_config(shared_data, tmp_path / "run")
    summary = run_curation_experiment(cfg)
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
    run_curation_experiment(cfg)
    assert (tmp_path / "run" / "shards" / "index.json").read_text() == first


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.shared_data
def test_curation_as_slurm_job_arrays(shared_data, tmp_path):
    import os

    out = Path(os.environ.get("MCBIO_SLURM_TMP", tmp_path)) / "slurm_run"
    cfg = small_config(shared_data, out, "cluster=slurm", "resources.profile=local_slurm",
                       "resources.cpus_per_task=1", "resources.timeout_min=10", "executor.poll_s=1")
    summary = run_curation_experiment(cfg)
    stats = check_outputs(out, summary)
    passages = next(s for s in stats["stages"] if s["stage"] == "passages")
    assert passages["tasks"] == 2  # one array of two tasks
    assert list((out / "logs" / "passages" / "slurm_logs").glob("*.out"))
