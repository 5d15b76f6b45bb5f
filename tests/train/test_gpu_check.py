"""benchmarks/gpu_check.py: its help documents the wheel folder, and its dry run goes through the whole plan."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def _run(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


def test_help_documents_the_wheel_folder():
    proc = _run("--help", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "pip download --dest gpu_check_wheels --no-deps --only-binary=:all:" in proc.stdout
    assert "-r benchmarks/gpu_check_requirements.txt" in proc.stdout and "--wheels" in proc.stdout


def test_requirements_are_pinned_and_checked_against_a_folder(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    gpu_check = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = gpu_check  # its dataclasses look their module up
    spec.loader.exec_module(gpu_check)
    pins = gpu_check.requirements()
    names = {name.lower() for name, _ in pins}
    assert {"transformers", "mosaicml", "tokenizers", "omegaconf"} <= names and "torch" not in names
    assert ("transformers", "4.53.3") in pins and ("mosaicml", "0.32.1") in pins
    for name, version in pins[1:]:  # every wheel but the first one
        (tmp_path / f"{name.replace('-', '_')}-{version}-py3-none-any.whl").touch()
    assert gpu_check.missing_wheels(tmp_path) == [f"{pins[0][0]}=={pins[0][1]}"]


def test_dry_run_goes_through_the_whole_plan():
    proc = _run("--dry-run")
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    for section in ("== environment", "== equivalence", "== throughput", "== evaluation", "== done"):
        assert section in out, section
    assert "flash_attn" in out  # says whether FlashAttention-2 is measured
    for mode in ("bidirectional", "causal, half window", "causal, full window"):
        assert mode in out
    # Every mode compares at least SDPA and the reference kernel (bf16) with the fp32 reference.
    assert out.count("vs reference fp32") >= 6 and "  sdpa " in out and "  reference " in out
    for objective in ("clm", "mlm"):
        assert f"reference          {objective}:" in out and f"sdpa               {objective}:" in out
    assert "tokens/s/GPU" in out and "MFU" in out and "logits finite: True" in out
