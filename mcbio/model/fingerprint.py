"""Content fingerprints: which weights and tokenizer a result came from, which data a run read.

A model's fingerprint is the SHA-256 over the sorted (file name, content SHA-256) pairs of
the files that decide what fine-tuning computes:

* ``init="pretrained"``: the weights (``*.safetensors``, ``*.bin`` and their shard
  indexes), the tokenizer files and ``config.json``;
* ``init="random"``: ``config.json`` and the tokenizer files only, since the weights are
  drawn from the fine-tuning seed and never read.

``config.json`` is included because it sets the architecture the weights are loaded into
(layers, attention window, RoPE) and the context fine-tuning uses; it is hashed without
``transformers_version`` and ``_name_or_path``, which say how the file was written, not
what the model computes. Files such as ``mcbio_run.json`` or a README are not hashed.

:func:`write_fingerprint` runs once at export and writes :data:`FINGERPRINT_FILE` beside the
model: every hashed file's size, mtime and ctime and its SHA-256. The file is *checked*
when read: a file whose size, mtime or ctime differs from the record (or that is new) is
hashed again, and files that match are not read. ctime cannot be set from user space, so
only a rewrite within one file-system timestamp tick, at the same size, escapes the
check. A folder without the file (a model mcbio did not export) is hashed on the fly; a
process hashes each unchanged file once.

:func:`content_digest` is the same per-file cache for any set of files (a pretraining
corpus, see :mod:`mcbio.pipelines.pretrain`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Mapping

from mcbio.files import sha256_file, write_json_atomic

FINGERPRINT_FILE = "mcbio_fingerprint.json"
FORMAT = 1
INIT_FILES = {"pretrained": ("config", "tokenizer", "weights"), "random": ("config", "tokenizer")}
TOKENIZER_NAMES = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.txt", "vocab.json", "merges.txt"}
CONFIG_NOISE = ("transformers_version", "_name_or_path")

# (path, size, mtime_ns, ctime_ns) -> SHA-256: a plan asks once per element for the same folder.
_hashed: dict[tuple, str] = {}


def file_role(name: str) -> str | None:
    """``config``, ``tokenizer``, ``weights``, or None for a file that does not enter a fingerprint."""
    if name == "config.json":
        return "config"
    if name in TOKENIZER_NAMES or name.endswith(".model"):  # sentencepiece.bpe.model, spiece.model
        return "tokenizer"
    if name != "training_args.bin" and name.endswith((".safetensors", ".bin", ".safetensors.index.json",
                                                      ".bin.index.json")):
        return "weights"
    return None


def _stat(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}


def _content_sha256(path: Path) -> str:
    if path.name == "config.json":
        config = json.loads(path.read_text(encoding="utf-8"))
        for key in CONFIG_NOISE:
            config.pop(key, None)
        return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    return sha256_file(path)


def content_digest(files: Mapping[str, Path], known: Mapping[str, dict] | None = None) -> dict[str, dict]:
    """name -> {size, mtime_ns, ctime_ns, sha256} of ``files``; an entry of ``known`` with the same
    size, mtime and ctime is trusted, any other file is hashed (once per process)."""
    known = known or {}
    out = {}
    for name, path in sorted(files.items()):
        st = _stat(path)
        old = known.get(name)
        if old and all(old.get(k) == v for k, v in st.items()) and old.get("sha256"):
            out[name] = {**st, "sha256": old["sha256"]}
            continue
        memo = (str(path.resolve()), *st.values())
        if memo not in _hashed:
            _hashed[memo] = _content_sha256(path)
        out[name] = {**st, "sha256": _hashed[memo]}
    return out


def combine(entries: Mapping[str, dict]) -> str:
    """One SHA-256 over the sorted (name, content hash) pairs: file times do not enter it."""
    digest = hashlib.sha256()
    for name in sorted(entries):
        digest.update(f"{name}\0{entries[name]['sha256']}\n".encode())
    return digest.hexdigest()


def _model_files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder not found: {folder}")
    return {p.name: p for p in folder.iterdir() if p.is_file() and file_role(p.name)}


def _fingerprints(entries: Mapping[str, dict]) -> dict[str, str]:
    return {init: combine({n: e for n, e in entries.items() if file_role(n) in roles})
            for init, roles in INIT_FILES.items()}


def _recorded(folder: Path) -> dict | None:
    path = folder / FINGERPRINT_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


def _write(folder: Path, entries: dict[str, dict]) -> None:
    write_json_atomic(folder / FINGERPRINT_FILE, {"format": FORMAT, "fingerprints": _fingerprints(entries),
                                                  "files": entries}, indent=1)


def write_fingerprint(folder: str | Path) -> str:
    """Hash every weight, tokenizer and config file of ``folder`` (no cache) into :data:`FINGERPRINT_FILE`;
    return the ``pretrained`` fingerprint. Called once by the export."""
    folder = Path(folder)
    files = _model_files(folder)
    entries = {name: {**_stat(p), "sha256": _content_sha256(p)} for name, p in sorted(files.items())}
    for name, e in entries.items():
        _hashed[(str(files[name].resolve()), e["size"], e["mtime_ns"], e["ctime_ns"])] = e["sha256"]
    _write(folder, entries)
    return _fingerprints(entries)["pretrained"]


def model_fingerprint(folder: str | Path, init: str = "pretrained") -> str:
    """The fingerprint of the model in ``folder`` as fine-tuning with ``init`` reads it (see the module).

    Raises FileNotFoundError when the folder, its ``config.json`` or (``pretrained``) its
    weights are missing. When :data:`FINGERPRINT_FILE` is there and a file changed since, the
    file is updated (when the folder is writable), so the next read is cheap again.
    """
    if init not in INIT_FILES:
        raise ValueError(f"init={init!r}: choose one of {', '.join(INIT_FILES)}")
    folder = Path(folder)
    files = _model_files(folder)
    if "config.json" not in files:
        raise FileNotFoundError(f"{folder}: no config.json")
    if init == "pretrained" and not any(file_role(n) == "weights" for n in files):
        raise FileNotFoundError(f"{folder}: no weight files (*.safetensors, *.bin)")
    recorded = _recorded(folder)
    entries = content_digest(files, (recorded or {}).get("files"))
    if recorded is not None and entries != recorded.get("files"):
        with contextlib.suppress(OSError):  # a read-only copy is still fingerprinted, just not cached
            _write(folder, entries)
    return combine({n: e for n, e in entries.items() if file_role(n) in INIT_FILES[init]})


def tokenizer_fingerprint(folder: str | Path) -> str:
    """The fingerprint of the tokenizer files of ``folder`` alone (a ``model.tokenizer`` folder)."""
    files = {n: p for n, p in _model_files(Path(folder)).items() if file_role(n) == "tokenizer"}
    if not files:
        raise FileNotFoundError(f"{folder}: no tokenizer files ({', '.join(sorted(TOKENIZER_NAMES))})")
    return combine(content_digest(files))


def model_fingerprint_if_present(folder: str | Path, init: str = "pretrained") -> str | None:
    """:func:`model_fingerprint`, or None while the model is not there (a plan made before its export)."""
    try:
        return model_fingerprint(folder, init)
    except FileNotFoundError:
        return None


def short(fingerprint: str | None) -> str:
    """The first 12 hex digits (what messages and tables show), or ``none`` for a record without one."""
    return fingerprint[:12] if fingerprint else "none"


def tree_files(root: str | Path) -> dict[str, Path]:
    """Relative name -> path of every regular file under ``root`` (``root`` itself when it is a file)."""
    root = Path(root)
    if root.is_file():
        return {root.name: root}
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}
