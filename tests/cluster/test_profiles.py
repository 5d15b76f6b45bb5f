"""The cluster profiles of slurm/profiles: each loads, the package reads that one copy, and the
GPU requests of the LLM stages come from the profile (planned only, nothing is submitted)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mcbio.cluster.executor import make_executor
from mcbio.cluster.launcher import LaunchContext
from mcbio.config.checks import Problems
from mcbio.config.loader import PACKAGE_PROFILES, find_profile, load_config, to_container
from mcbio.config.schema import RunConfig

REPO = Path(__file__).resolve().parents[2]
PROFILES = REPO / "slurm" / "profiles"
SHIPPED = sorted(PROFILES.glob("*.yaml"))
GPU_PROFILES = ("jean_zay_h100", "jean_zay_a100")


@pytest.fixture(autouse=True)
def shipped_profiles_only(monkeypatch):
    """A site's own MCBIO_PROFILES folders come first in the lookup: keep them out of these tests."""
    monkeypatch.delenv("MCBIO_PROFILES", raising=False)


def test_the_package_reads_the_one_copy_in_slurm_profiles():
    assert {p.stem for p in SHIPPED} >= {*GPU_PROFILES, "local_slurm", "local"}
    assert PACKAGE_PROFILES == PROFILES.resolve()
    # The package's folder is a link to slurm/profiles, not a second copy of the files.
    assert (REPO / "mcbio" / "cluster" / "profiles").is_symlink()
    for path in SHIPPED:
        assert find_profile(path.stem) == PACKAGE_PROFILES / path.name


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_profile_loads_with_its_values(path):
    resources = to_container(load_config(RunConfig, None, [f"resources.profile={path.stem}"]).resources)
    written = OmegaConf.to_container(OmegaConf.load(path))
    assert {k: resources[k] for k in written} == written


@pytest.mark.parametrize("name", GPU_PROFILES)
def test_a_gpu_profile_runs_one_task_per_gpu_with_its_own_modules_and_threads(name):
    res = load_config(RunConfig, None, [f"resources.profile={name}"]).resources
    assert res.gpus_per_node > 0 and res.tasks_per_node == res.gpus_per_node
    # The arch module selects the builds for the nodes the constraint picks.
    assert f"module load arch/{res.constraint}" in res.setup
    assert f"export OMP_NUM_THREADS={res.cpus_per_task}" in res.setup


def sbatch_gpus(resources, tmp_path: Path) -> int:
    """The GPUs the stage's sbatch script asks for (the option is left out for none)."""
    return make_executor("slurm", resources, tmp_path / "submitit", "stage").parameters.get("gpus_per_node", 0)


def planned_gpus(plan, tmp_path: Path) -> dict[str, int]:
    gpus = {s.name: s.resources.gpus_per_node for s in plan.stages}
    assert {s.name: sbatch_gpus(s.resources, tmp_path) for s in plan.stages} == gpus
    return gpus


# The launch checks (inputs, model folder, LLM environment) are collected, not raised: what a
# stage asks the scheduler for does not depend on them, and these plans run on no real data.
@pytest.mark.parametrize("profile, backend, llm_gpus", [
    ("jean_zay_h100", "vllm", 1),
    ("jean_zay_a100", "vllm", 1),
    ("jean_zay_h100", "rules", 0),   # the rule stand-in needs no GPU
    ("local_slurm", "vllm", 0),      # no GPU on the node: none asked, rather than a job that never starts
])
def test_only_the_curation_llm_stage_asks_for_a_gpu_and_only_where_the_profile_has_one(tmp_path, profile, backend,
                                                                                       llm_gpus):
    from mcbio.config.curation import CurationRunConfig
    from mcbio.pipelines.curation import plan_curation

    config = REPO / "experiments" / "curation" / "config.yaml"
    cfg = load_config(CurationRunConfig, config, ["preset=smoke", "cluster=slurm", f"resources.profile={profile}",
                                                  f"llm.backend={backend}", f"out_dir={tmp_path / 'run'}"])
    plan = plan_curation(cfg, LaunchContext("slurm", config), Problems())
    gpus = planned_gpus(plan, tmp_path)
    assert gpus.pop("passages") == llm_gpus
    assert {"select", "mix_pack", "stats"} <= set(gpus) and set(gpus.values()) == {0}
    assert plan.stage("passages").resources.tasks_per_node == 1
    assert not (tmp_path / "run").exists()  # planned, nothing written


@pytest.mark.parametrize("profile, shard_gpus", [("jean_zay_h100", 1), ("local_slurm", 0)])
def test_ontobook_shards_ask_their_gpu_through_the_profile(tmp_path, profile, shard_gpus):
    from mcbio.config.ontobook import OntobookRunConfig
    from mcbio.pipelines.ontobook import plan_ontobook

    config = REPO / "experiments" / "ontobook" / "config.yaml"
    cfg = load_config(OntobookRunConfig, config, ["cluster=slurm", f"resources.profile={profile}",
                                                  f"out_dir={tmp_path / 'run'}"])
    plan = plan_ontobook(cfg, LaunchContext("slurm", config), Problems())
    assert planned_gpus(plan, tmp_path) == {"shards": shard_gpus, "merge": 0}
