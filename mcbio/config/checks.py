"""Launch-time checks: every problem of a plan is collected, then reported together.

Planners call these before anything is submitted, so a wrong path, task or field costs
a second at the login node instead of a queue wait and an allocation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from mcbio.config.loader import ConfigError

# Config keys naming a folder a run writes into, wherever they sit in a run config.
OUTPUT_DIR_KEYS = ("out_dir", "results_dir")

# Files of which a loadable Hugging Face tokenizer has at least one.
TOKENIZER_FILES = ("tokenizer.json", "sentencepiece.bpe.model", "spiece.model", "vocab.txt", "vocab.json",
                   "tokenizer.model")


class Problems:
    """Collects ``key: message`` lines; :meth:`raise_if_any` turns them into one ConfigError.

    ``produced``: paths that an earlier stage of the same plan writes (a study's base model,
    its curated shards). They may be absent at launch; checks accept them as they will be.
    """

    def __init__(self, produced: Iterable[str | Path] = (), prefix: str = "", items: list[str] | None = None) -> None:
        self.items: list[str] = [] if items is None else items
        self.produced = tuple(Path(p).expanduser().resolve() for p in produced)
        self.prefix = prefix

    def section(self, prefix: str) -> "Problems":
        """A view adding into the same list, its keys prefixed (a study's ``curation.`` section)."""
        return Problems(self.produced, self.prefix + prefix, self.items)

    def pending(self, path: str | Path) -> bool:
        """``path`` does not exist yet, and an earlier stage of the plan writes it (or a folder above it)."""
        path = Path(path).expanduser().resolve()
        return not path.exists() and any(path == p or p in path.parents for p in self.produced)

    def add(self, key: str, message: str) -> None:
        key = self.prefix + key if key else self.prefix.rstrip(".")
        line = f"'{key}': {message}" if key else message
        if line not in self.items:
            self.items.append(line)

    @contextlib.contextmanager
    def collect(self, key: str) -> Iterator[None]:
        """Record an exception raised in the block under ``key`` instead of propagating it."""
        try:
            yield
        except (ConfigError, FileNotFoundError, KeyError, ValueError, OSError) as err:
            message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
            self.add(key, str(message))

    def raise_if_any(self, what: str) -> None:
        if self.items:
            lines = "\n".join(f"  - {item}" for item in self.items)
            raise ConfigError(f"{len(self.items)} problem(s) found before submitting {what}; nothing was submitted:\n{lines}")


def check_path(problems: Problems, key: str, value: str | None, kind: str = "any") -> Path | None:
    """``value`` exists and is a ``file``, a ``dir`` or ``any``; returns it absolute, else records why not."""
    if not value:
        return None
    path = Path(value).expanduser()
    if problems.pending(path):
        return path.resolve()
    if not path.exists():
        problems.add(key, f"{path} does not exist")
        return None
    if kind == "file" and not path.is_file():
        problems.add(key, f"{path} is not a file")
        return None
    if kind == "dir" and not path.is_dir():
        problems.add(key, f"{path} is not a folder")
        return None
    return path.resolve()


def check_tokenizer_dir(problems: Problems, key: str, path: Path) -> None:
    if problems.pending(path):
        return
    if not (path / "tokenizer_config.json").is_file() and not any((path / f).is_file() for f in TOKENIZER_FILES):
        problems.add(key, f"{path} holds no tokenizer (none of tokenizer_config.json, {', '.join(TOKENIZER_FILES)})")


def check_model_dir(problems: Problems, key: str, value: str | None, tokenizer: bool = True) -> Path | None:
    """A local Hugging Face model folder: ``config.json`` (and a tokenizer unless given elsewhere)."""
    path = check_path(problems, key, value, "dir")
    if path is None or problems.pending(path):
        return path
    if not (path / "config.json").is_file():
        problems.add(key, f"{path} is not a Hugging Face model folder (config.json missing)")
        return None
    if tokenizer:
        check_tokenizer_dir(problems, key, path)
    return path


def check_llm(problems: Problems, key: str, cfg) -> None:
    """An LLM section (``key`` = its config path) can run: the model for its backend, and the LLM
    environment for the server backends. Nothing is imported from that environment here."""
    from mcbio.llm.config import SERVER_BACKENDS
    from mcbio.llm.env import env_problem
    from mcbio.llm.models import context_problem, model_problem

    if cfg.backend == "rules":
        return
    problem = model_problem(cfg.model, cfg.backend)
    if problem:
        problems.add(f"{key}.model", problem)
    if cfg.backend in SERVER_BACKENDS:
        problem = env_problem(cfg.env)
        if problem:
            problems.add(f"{key}.env", problem)
        problem = context_problem(cfg.model, cfg.server.max_model_len)
        if problem:
            problems.add(f"{key}.server.max_model_len", problem)


def check_writable_dir(problems: Problems, key: str, value: str | Path) -> None:
    """A run can write into ``value``: a file can be made in it, or in its nearest existing folder
    when it is not there yet (the run makes it). Nothing is left behind, nothing is created.

    A file is really made (and removed): ``os.access`` says yes to root on a read-only mount
    and knows nothing of quotas, and a score lost at the end of a job costs the whole job.
    """
    path = Path(value).expanduser().absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        where = "" if existing == path else f" ({existing} is a file)"
        problems.add(key, f"{path} is not a folder{where}")
        return
    try:
        # An unnamed temporary file where the OS offers one: the folder's entries stay untouched.
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        shown = f"{path}" if existing == path else f"{path} (its nearest existing folder {existing})"
        problems.add(key, f"cannot write into {shown}: {err.strerror or err}")


def output_dirs(cfg: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(key, path) of every :data:`OUTPUT_DIR_KEYS` value set in the config ``cfg``, nested sections included."""
    found = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name in OUTPUT_DIR_KEYS and isinstance(value, (str, Path)) and str(value):
            found.append((prefix + f.name, str(value)))
        elif dataclasses.is_dataclass(value):
            found += output_dirs(value, f"{prefix}{f.name}.")
    return found


def check_output_dirs(problems: Problems, cfg: Any, run_dir: Path) -> None:
    """Every folder the run ``cfg`` writes into is writable: its run directory (``out_dir``, also when it
    defaults to ``paths.runs_root``) and every other ``out_dir`` / ``results_dir`` key of the config."""
    check_writable_dir(problems, "out_dir", run_dir)
    for key, value in output_dirs(cfg):
        if key != "out_dir":
            check_writable_dir(problems, key, value)


def check_utf8_corpus(problems: Problems, key: str, value: str | Path | None) -> None:
    """Every file :func:`mcbio.data.corpus.iter_documents` would read under ``value`` is UTF-8; else the
    first bad byte is named (file, line, offset). Read at the speed of the disk: a corpus run is small
    (paper-scale data comes as packed shards, which are not text)."""
    from mcbio.data.corpus import first_invalid_utf8

    if not value or not Path(value).expanduser().exists() or problems.pending(Path(value)):
        return
    with problems.collect(key):
        found = first_invalid_utf8(Path(value).expanduser())
        if found:
            problems.add(key, str(found))
