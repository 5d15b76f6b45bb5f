"""The package works installed (``pip install .``, not editable), run from another working directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAUNCHERS = sorted(p for p in (REPO / "experiments").glob("*/launch.py")) + sorted((REPO / "ablations").glob("*/launch.py"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(REPO)], check=True, cwd=build, timeout=600,
                   env={**os.environ, "TMPDIR": str(build)})
    return target


def run(installed: Path, cwd: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(installed), "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_installed_package_is_the_one_imported_and_ships_its_data(installed, tmp_path):
    proc = run(installed, tmp_path, "-c", "import json, mcbio, mcbio.config.loader as l; print(mcbio.__file__); "
               "print(l.find_profile('jean_zay_a100')); "
               "print(json.dumps({p.name: p.read_text() for p in l.PACKAGE_PROFILES.glob('*.yaml')}))")
    assert proc.returncode == 0, proc.stderr
    module, profile, shipped = proc.stdout.splitlines()
    assert module.startswith(str(installed)) and profile.startswith(str(installed))
    # The package carries the files of slurm/profiles themselves (the checkout links to them).
    assert json.loads(shipped) == {p.name: p.read_text() for p in (REPO / "slurm" / "profiles").glob("*.yaml")}


@pytest.mark.parametrize("launcher", LAUNCHERS, ids=[f"{p.parent.parent.name}/{p.parent.name}" for p in LAUNCHERS])
def test_every_launcher_dry_runs_from_another_folder(installed, tmp_path, launcher, shared_data, tiny_hf_dir):
    args = [str(launcher), "dry_run=true", "preset=smoke", f"paths.shared_data={shared_data}", "cluster=local"]
    if launcher.parent.name in ("evaluate",):
        args += [f"model.path={tiny_hf_dir}", "model.name=tiny"]
    if launcher.parent.name == "eval_baselines":
        from mcbio.config import load_config
        from mcbio.config.evaluation import EvaluateRunConfig

        models = load_config(EvaluateRunConfig, launcher.with_name("config.yaml")).models
        args += [f"models.{name}.path={tiny_hf_dir}" for name in models]
    proc = run(installed, tmp_path, *args)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "# " in proc.stdout and ": pending" in proc.stdout
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


@pytest.mark.slow
def test_the_smoke_run_works_installed_from_another_folder(installed, tmp_path):
    proc = run(installed, tmp_path, str(REPO / "experiments" / "base_clm_detour" / "launch.py"), "preset=smoke",
               "tracking.wandb=false", "train.phases.stable.tokens=16384", "train.phases.stable.warmup_tokens=2048",
               "train.phases.decay.tokens=4096", "evaluation.finetune.epochs=1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "runs" / "base_clm_detour-smoke" / "hf" / "config.json").is_file()
    assert (tmp_path / "results" / "records" / "base_clm_detour-smoke.jsonl").is_file()
