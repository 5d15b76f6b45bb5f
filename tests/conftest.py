"""Shared fixtures: a tokenizer trained on the sample corpus, a tiny random ModernBERT, data paths.

Nothing is downloaded: models are built here, data comes from the repo or ../shared/data.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MCBIO_DATA", REPO.parent / "shared" / "data"))


@functools.lru_cache(maxsize=1)
def slurm_reachable() -> bool:
    import subprocess

    if not shutil.which("sbatch"):
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def pytest_runtest_setup(item):
    """Slurm tests skip without Slurm, except under CI=true where that is a failure."""
    if "slurm" in item.keywords and not slurm_reachable():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but no Slurm is reachable (sbatch/sinfo): .ci/run must start it")
        pytest.skip("no reachable Slurm (sbatch/sinfo); start one with slurm/start_slurm.sh")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set MCBIO_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def paper_dir() -> Path:
    """The paper's tables as CSV (../shared/paper, or MCBIO_PAPER=PATH); tests skip without them."""
    folder = Path(os.environ.get("MCBIO_PAPER", REPO.parent / "shared" / "paper"))
    if not (folder / "table3_main.csv").is_file():
        pytest.skip(f"the paper's tables not found at {folder} (set MCBIO_PAPER=PATH)")
    return folder


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from mcbio.data.corpus import iter_documents
    from mcbio.data.tokenizer import train_bpe_tokenizer

    return train_bpe_tokenizer((d.text for d in iter_documents()), vocab_size=1024)


def build_tiny_modernbert(tokenizer, attn_implementation: str = "sdpa", seed: int = 0, **overrides):
    """A tiny random ModernBERT (3 layers: layer 0 global, 1-2 sliding window of 16)."""
    from mcbio.config.schema import ModelConfig
    from mcbio.model.build import build_masked_lm

    fields = dict(vocab_size=1024, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                  intermediate_size=48, max_position_embeddings=256, local_attention=16,
                  attn_implementation=attn_implementation)
    fields.update(overrides)
    return build_masked_lm(ModelConfig(**fields), tokenizer, seed=seed).eval()


@pytest.fixture(scope="session")
def tiny_model_factory(tiny_tokenizer):
    return lambda **kw: build_tiny_modernbert(tiny_tokenizer, **kw)


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A saved tiny ModernBERT + tokenizer, loadable with AutoModel*.from_pretrained."""
    from mcbio.model.export import export_hf

    folder = tmp_path_factory.mktemp("tiny_hf")
    torch.manual_seed(0)
    export_hf(build_tiny_modernbert(tiny_tokenizer), tiny_tokenizer, folder)
    return folder


def run_launcher(experiment: str, *overrides: str, timeout: int = 900):
    """Run ``experiments/<experiment>/launch.py`` as a user would; fail with its output on error."""
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    proc = subprocess.run(
        [sys.executable, str(REPO / "experiments" / experiment / "launch.py"), *overrides],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO,
    )
    if proc.returncode != 0:
        pytest.fail(f"{experiment} launcher exited {proc.returncode}\nSTDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """The README's smoke run (CLM phase, MLM phase, export, mini NER, table) in a temp run directory."""
    root = tmp_path_factory.mktemp("smoke")
    out = root / "run"
    run_launcher("base_clm_detour", "preset=smoke", f"out_dir={out}", f"evaluation.results_dir={root / 'results'}")
    return out


# The checkout's own output folders belong to the user (the README's quick start writes there):
# no test may create, change or delete anything under them.
USER_OUTPUTS = (REPO / "runs", REPO / "results")


def snapshot_outputs(roots=USER_OUTPUTS) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file and folder under ``roots``, by path."""
    seen: dict[str, tuple[int, int]] = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            for name in [*dirs, *files]:
                path = os.path.join(folder, name)
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                seen[path] = (0 if name in dirs else st.st_size, st.st_mtime_ns)
    return seen


def changed_outputs(before: dict, after: dict) -> list[str]:
    """``+ path`` (created), ``- path`` (deleted), ``~ path`` (changed), sorted by path."""
    marks = [(p, "+") for p in after.keys() - before.keys()] + [(p, "-") for p in before.keys() - after.keys()]
    marks += [(p, "~") for p in before.keys() & after.keys() if before[p] != after[p]]
    return [f"{mark} {os.path.relpath(p, REPO)}" for p, mark in sorted(marks)]


@pytest.fixture(autouse=True)
def _user_outputs_untouched():
    before = snapshot_outputs()
    yield
    changes = changed_outputs(before, snapshot_outputs())
    if changes:
        shown = "\n".join(changes[:20]) + (f"\n... and {len(changes) - 20} more" if len(changes) > 20 else "")
        pytest.fail("this test wrote into the checkout's runs/ or results/ (give it out_dir/results_dir "
                    f"under tmp_path):\n{shown}", pytrace=False)


def launch_refused(capsys, schema, config, planner, run_dir: Path, *overrides: str) -> str:
    """Launch; assert it stopped before submitting (exit 2, no run directory); return its message."""
    from mcbio.cluster.launcher import launch

    rc = launch(schema, config, planner, [f"out_dir={run_dir}", *overrides])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert not run_dir.exists(), "a run directory was created: something was submitted"
    assert "nothing was submitted" in err or "config error" in err
    return err


@contextlib.contextmanager
def mounted_tmpfs(folder: Path, options: str):
    """``folder`` as a fresh tmpfs mounted with ``options`` (needs root, as in CI; the test skips where mounts are refused)."""
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True).returncode != 0:
        pytest.skip(f"cannot mount a tmpfs ({options}) here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)
