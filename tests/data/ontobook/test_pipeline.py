"""The OntoBook experiment end to end (rules backend) on hand-made files and on the real ones."""

import json
from pathlib import Path

import pytest

from mcbio.cluster.launcher import LaunchContext, launch
from mcbio.config.loader import ConfigError, load_config
from mcbio.config.ontobook import OntobookRunConfig
from mcbio.pipelines.ontobook import plan_ontobook

REPO = Path(__file__).resolve().parents[3]
EXPERIMENT = REPO / "experiments" / "ontobook" / "config.yaml"


def _cfg(tmp_path, cim10_csv, atc_json, *extra):
    return [
        "preset=smoke", f"out_dir={tmp_path / 'run'}",
        f"ontologies.cim10.path={cim10_csv}", f"ontologies.atc.path={atc_json}",
        "ontologies.cim10.walks=12", "ontologies.atc.walks=8",
        "walk.min_steps=3", "walk.max_steps=5", "walk.min_chars=100", *extra,
    ]


def run_ontobook(args: list[str]) -> dict:
    """The launcher as a user runs it; returns what the merge wrote."""
    assert launch(OntobookRunConfig, EXPERIMENT, plan_ontobook, args) == 0
    out = Path([a for a in args if a.startswith("out_dir=")][-1].split("=", 1)[1])
    docs = (out / "documents" / "ontobook.jsonl").read_text(encoding="utf-8").splitlines()
    stats = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in (out / "stats").glob("*.json")}
    return {"out_dir": str(out), "documents": len(docs), "ontologies": stats}


def test_experiment_config_holds_paper_volumes():
    cfg = load_config(OntobookRunConfig, EXPERIMENT)
    assert {k: o.walks for k, o in cfg.ontologies.items()} == {"cim10": 400_000, "ccam": 760_000, "atc": 140_000}
    assert (cfg.walk.min_steps, cfg.walk.max_steps, cfg.walk.min_chars) == (8, 20, 300)
    assert cfg.rephrase.llm.backend == "vllm"
    smoke = load_config(OntobookRunConfig, EXPERIMENT, ["preset=smoke"])
    assert smoke.rephrase.llm.backend == "rules" and not smoke.ontologies["ccam"].enabled
    with pytest.raises(ConfigError, match="unknown edge type 'treats'"):
        load_config(OntobookRunConfig, EXPERIMENT, ["ontologies.atc.walk_types.drugs.edge_weights.treats=1"])
    with pytest.raises(ConfigError, match="min_steps"):
        load_config(OntobookRunConfig, EXPERIMENT, ["walk.min_steps=30"])


def test_run_writes_documents_and_stats_and_resumes(tmp_path, cim10_csv, atc_json):
    summary = run_ontobook(_cfg(tmp_path, cim10_csv, atc_json))
    out = Path(summary["out_dir"])
    docs = [json.loads(line) for line in (out / "documents" / "ontobook.jsonl").open(encoding="utf-8")]
    assert summary["documents"] == len(docs) == 20
    assert {d["ontology"] for d in docs} == {"cim10", "atc"} and len({d["id"] for d in docs}) == 20
    for doc in docs:
        assert doc["source"] == "ontobook" and all(code in doc["text"] for code in doc["codes"])
    stats = json.loads((out / "stats" / "cim10.json").read_text(encoding="utf-8"))
    assert stats["walks"] == stats["kept"] == 12 and stats["tokens"] > 0 and stats["shards"] == 2
    assert sum(stats["steps_hist"].values()) == 12 and set(map(int, stats["steps_hist"])) <= {3, 4, 5}
    # A rerun skips finished shards: the shard files are not rewritten.
    shard = out / "shards" / "cim10-0000.jsonl"
    before = shard.stat().st_mtime_ns
    assert run_ontobook(_cfg(tmp_path, cim10_csv, atc_json))["documents"] == 20
    assert shard.stat().st_mtime_ns == before


def test_walks_drawn_twice_across_shards_are_merged_once(tmp_path, cim10_csv, atc_json):
    # Many shards of short walks on a 14-code graph: some shards draw the same walk.
    run_ontobook(_cfg(tmp_path, cim10_csv, atc_json, "ontologies.cim10.shards=6", "ontologies.cim10.walks=60",
                      "walk.min_steps=1", "walk.max_steps=1", "walk.min_chars=0", "ontologies.atc.enabled=false"))
    stats = json.loads((tmp_path / "run" / "stats" / "cim10.json").read_text(encoding="utf-8"))
    assert stats["duplicates_across_shards"] > 0
    assert stats["kept"] + stats["duplicates_across_shards"] == stats["walks"] == 60
    ids = [json.loads(line)["id"] for line in (tmp_path / "run" / "documents" / "ontobook.jsonl").open()]
    assert len(ids) == len(set(ids)) == stats["kept"]


def test_rdf_source_end_to_end(tmp_path, cim10_csv, atc_json, skos_ttl):
    summary = run_ontobook(_cfg(tmp_path, cim10_csv, atc_json, "ontologies.cim10.enabled=false",
                                "ontologies.atc.enabled=false", "ontologies.ccam.enabled=true",
                                f"ontologies.ccam.path={skos_ttl}", "ontologies.ccam.walks=2", "ontologies.ccam.shards=1",
                                "walk.min_steps=2", "walk.max_steps=3", "walk.min_chars=50"))
    assert summary["ontologies"]["ccam"]["kept"] == 2
    docs = [json.loads(line) for line in (tmp_path / "run" / "documents" / "ontobook.jsonl").open()]
    assert {d["ontology"] for d in docs} == {"ccam"} and any("AAQP" in c for d in docs for c in d["codes"])


def test_missing_source_file_fails_before_any_work(tmp_path, cim10_csv, atc_json, capsys):
    assert launch(OntobookRunConfig, EXPERIMENT, plan_ontobook,
                  _cfg(tmp_path, cim10_csv, atc_json, "ontologies.ccam.enabled=true")) == 2
    assert "ontologies.ccam.path is not set" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_shards_run_as_a_local_job_array(tmp_path, cim10_csv, atc_json):
    summary = run_ontobook(_cfg(tmp_path, cim10_csv, atc_json, "ontologies.atc.enabled=false"))
    assert summary["documents"] == 12
    assert len(list((tmp_path / "run" / "submitit" / "shards").glob("*_result.pkl"))) == 2


@pytest.mark.shared_data
def test_real_cim10_and_atc_walks(shared_data, tmp_path):
    summary = run_ontobook([
        "preset=smoke", f"paths.shared_data={shared_data}", f"out_dir={tmp_path / 'real'}",
        "ontologies.cim10.walks=60", "ontologies.atc.walks=30",
    ])
    for name, n in (("cim10", 60), ("atc", 30)):
        stats = json.loads((tmp_path / "real" / "stats" / f"{name}.json").read_text(encoding="utf-8"))
        assert stats["walks"] == n and stats["kept"] == n  # the rules backend keeps every code
        assert min(map(int, stats["steps_hist"])) >= 8 and max(map(int, stats["steps_hist"])) <= 20
        assert stats["walk_chars_quantiles"]["p0"] >= 250  # histogram bin of the 300-character floor
    assert summary["documents"] == 90


def test_shard_elements_get_the_shard_needs_and_the_merge_none_of_them(tmp_path, cim10_csv, atc_json):
    cfg = load_config(OntobookRunConfig, EXPERIMENT, _cfg(tmp_path, cim10_csv, atc_json) + [
        "resources.gpus_per_node=4", "shard_needs.gpus_per_node=1", "shard_needs.cpus_per_task=8",
        "shard_needs.timeout_min=240"])
    plan = plan_ontobook(cfg, LaunchContext("local", EXPERIMENT))
    shards, merge = plan.stage("shards"), plan.stage("merge")
    assert sorted((e.cfg.ontology, e.cfg.index) for e in shards.elements) == [("atc", 0), ("atc", 1), ("cim10", 0),
                                                                            ("cim10", 1)]
    res = shards.resources
    assert (res.gpus_per_node, res.tasks_per_node, res.cpus_per_task, res.timeout_min) == (1, 1, 8, 240)
    assert merge.resources.gpus_per_node == 0 and merge.after == ("shards",)
    assert cfg.resources.gpus_per_node == 4  # the loaded config is left as it was


@pytest.mark.slurm
def test_shards_as_a_slurm_job_array(tmp_path, cim10_csv, atc_json):
    import os

    out = Path(os.environ.get("MCBIO_SLURM_TMP", tmp_path)) / "ontobook_slurm"
    summary = run_ontobook(_cfg(tmp_path, cim10_csv, atc_json, "cluster=slurm", "resources.profile=local_slurm",
                                f"out_dir={out}", "shard_needs.cpus_per_task=1", "shard_needs.timeout_min=10"))
    assert summary["documents"] == 20
    assert len(list((out / "submitit" / "shards").glob("*_result.pkl"))) == 4
