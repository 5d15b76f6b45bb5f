"""Task registry: where a task's splits live, their format, type, metric and reader options.

Built-in tasks are declared below; users declare more in YAML (``custom_tasks`` in an
evaluation config, or files listed in ``task_files``) with the same keys as :class:`TaskSpec`::

    my_task:
      type: multi_label          # ner | single_label | multi_label
      format: jsonl              # conll | brat | tsv | csv | jsonl | hf_disk
      root: /data/my_task        # a folder, or "shared" (paths.shared_data), or "package"
      splits: {train: train.jsonl, dev: dev.jsonl, test: test.jsonl}
      text_field: text
      label_field: labels

Relative ``root`` values in a task file are resolved against that file's folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from mcbio.config.loader import ConfigError

RESOURCES = Path(__file__).resolve().parents[1] / "resources" / "sample_tasks"
TASK_TYPES = ("ner", "single_label", "multi_label")
FORMATS = ("conll", "brat", "tsv", "csv", "jsonl", "hf_disk")
PRIMARY_METRIC = {"ner": "strict_f1", "single_label": "macro_f1", "multi_label": "micro_f1"}


@dataclass
class TaskSpec:
    name: str = ""
    type: str = "ner"
    format: str = "conll"
    # split -> path relative to ``root`` (hf_disk: one DatasetDict folder may serve every split)
    splits: Dict[str, str] = field(default_factory=dict)
    # "package" = mcbio/resources/sample_tasks; "shared" = paths.shared_data; else a folder
    # ("" = paths are absolute or relative to the working directory).
    root: str = "shared"
    # None = the type's standard metric (strict_f1 | macro_f1 | micro_f1).
    metric: Optional[str] = None
    # Classification readers (tsv/csv/jsonl/hf_disk).
    text_field: str = "text"
    label_field: str = "label"
    # Separator of several labels in one string cell (multi-label TSV); null = one label.
    label_sep: Optional[str] = "|"
    # NER readers (hf_disk).
    tokens_field: str = "tokens"
    tags_field: str = "ner_tags"
    # BRAT -> IOB2 (policy in mcbio.evaluate.loaders).
    segment: str = "line"
    max_words: Optional[int] = 256
    discontinuous: str = "fragments"
    entity_types: List[str] = field(default_factory=list)
    # Where the data comes from, shown when it is missing.
    source: str = ""

    def __post_init__(self) -> None:
        if self.type not in TASK_TYPES:
            raise ConfigError(f"task '{self.name}': type {self.type!r} is not one of {', '.join(TASK_TYPES)}")
        if self.format not in FORMATS:
            raise ConfigError(f"task '{self.name}': format {self.format!r} is not one of {', '.join(FORMATS)}")
        if self.type != "ner" and self.format in ("conll", "brat"):
            raise ConfigError(f"task '{self.name}': format '{self.format}' holds NER data, but type is '{self.type}'")
        if self.type == "ner" and self.format in ("tsv", "csv", "jsonl"):
            raise ConfigError(f"task '{self.name}': format '{self.format}' is read as classification data, but type is 'ner'")
        for split in ("train", "dev", "test"):
            if split not in self.splits:
                raise ConfigError(f"task '{self.name}': 'splits' needs train, dev and test (has: {', '.join(self.splits) or 'none'})")

    @property
    def primary_metric(self) -> str:
        return self.metric or PRIMARY_METRIC[self.type]

    def base_dir(self, shared_data: str | None) -> Path:
        if self.root == "package":
            return RESOURCES
        if self.root == "shared":
            if not shared_data:
                raise FileNotFoundError(
                    f"task '{self.name}' reads the shared data: set paths.shared_data=PATH or MCBIO_DATA=PATH"
                )
            return Path(shared_data)
        return Path(self.root)

    def path(self, split: str, shared_data: str | None) -> Path:
        if split not in self.splits:
            raise KeyError(f"task '{self.name}' has no '{split}' split (has: {', '.join(self.splits)})")
        path = self.base_dir(shared_data) / self.splits[split]
        if not path.exists():
            hint = f" {self.source}" if self.source else ""
            raise FileNotFoundError(
                f"task '{self.name}': {split} split not found at {path}.{hint} "
                f"Point the task at your copy with custom_tasks.{self.name}.root=/path/to/folder "
                f"(and .splits.{split}=FILE), or declare it in a task file."
            )
        return path


def _shared(name: str, type_: str, fmt: str, folder: str, ext: str, source: str, **kw) -> TaskSpec:
    return TaskSpec(name=name, type=type_, format=fmt, root="shared", source=source,
                    splits={s: f"{folder}/{s}.{ext}" for s in ("train", "dev", "test")}, **kw)


_NOT_SHIPPED = (
    "{} is not distributed with mcbio nor in the shared data folder: obtain it from its authors "
    "and place train/dev/test.jsonl (fields 'text' and '{}') at the path above."
)

BUILTIN_TASKS: dict[str, TaskSpec] = {
    "mini_ner": TaskSpec(
        name="mini_ner", type="ner", format="conll", root="package",
        splits={s: f"mini_ner/{s}.conll" for s in ("train", "dev", "test")},
    ),
    # --- the paper's tasks whose data is public here (../shared/data)
    "quaero_emea": TaskSpec(
        name="quaero_emea", type="ner", format="brat",
        splits={s: f"quaero/corpus/{s}/EMEA" for s in ("train", "dev", "test")},
        source="QUAERO French Medical Corpus (BRAT), https://quaerofrenchmed.limsi.fr/.",
    ),
    "quaero_medline": TaskSpec(
        name="quaero_medline", type="ner", format="brat",
        splits={s: f"quaero/corpus/{s}/MEDLINE" for s in ("train", "dev", "test")},
        source="QUAERO French Medical Corpus (BRAT), https://quaerofrenchmed.limsi.fr/.",
    ),
    # --- DrBenchmark
    "morfitt": _shared("morfitt", "multi_label", "tsv", "morfitt", "tsv",
                       "MORFITT (qanastek/MORFITT, Zenodo 7893841).",
                       text_field="abstract", label_field="specialities", label_sep="|"),
    # --- the paper's tasks whose data is not public here: declared, read from paths.shared_data
    "diamed": _shared("diamed", "single_label", "jsonl", "diamed", "jsonl",
                      _NOT_SHIPPED.format("DiaMed", "label"), label_field="label", label_sep=None),
    "fracco_30": _shared("fracco_30", "multi_label", "jsonl", "fracco/top30", "jsonl",
                         _NOT_SHIPPED.format("FrACCO (30 most frequent codes)", "labels"), label_field="labels"),
    "fracco_100": _shared("fracco_100", "multi_label", "jsonl", "fracco/top100", "jsonl",
                          _NOT_SHIPPED.format("FrACCO (100 most frequent codes)", "labels"), label_field="labels"),
    "cantemist": _shared("cantemist", "multi_label", "jsonl", "cantemist_fr", "jsonl",
                         _NOT_SHIPPED.format("CANTEMIST (French, coding)", "labels"), label_field="labels"),
    "distemist": _shared("distemist", "multi_label", "jsonl", "distemist_fr", "jsonl",
                         _NOT_SHIPPED.format("DisTEMIST (French, linking as multi-label)", "labels"), label_field="labels"),
    "meddialog_fr": _shared("meddialog_fr", "multi_label", "jsonl", "meddialog_fr", "jsonl",
                            _NOT_SHIPPED.format("MedDialog-FR", "labels"), label_field="labels"),
}

PAPER_TASKS = ["diamed", "fracco_30", "fracco_100", "cantemist", "distemist", "meddialog_fr",
               "quaero_emea", "quaero_medline"]


def task_from_dict(name: str, values: dict, source: str, base_dir: Path | None = None) -> TaskSpec:
    """A TaskSpec from YAML keys; unknown keys and bad values are errors naming ``source``."""
    known = {f.name for f in dataclasses.fields(TaskSpec)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{source}: task '{name}': unknown key(s) {unknown}. Valid keys: {', '.join(sorted(known - {'name'}))}")
    values = dict(values)
    values["name"] = name
    try:
        spec = TaskSpec(**values)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    except TypeError as err:
        raise ConfigError(f"{source}: task '{name}': {err}") from None
    if base_dir is not None and spec.root not in ("package", "shared") and not Path(spec.root).is_absolute():
        spec.root = str((base_dir / spec.root).resolve())
    return spec


def load_task_file(path: str | Path) -> dict[str, TaskSpec]:
    """A YAML mapping ``task_name: {type, format, root, splits, ...}``."""
    from omegaconf import OmegaConf

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"task file not found: {path}")
    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as err:
        raise ConfigError(f"{path}: cannot parse YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must map task names to task declarations")
    tasks = {}
    for name, values in data.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: task '{name}' must be a mapping of keys (type, format, splits, ...)")
        tasks[str(name)] = task_from_dict(str(name), values, str(path), base_dir=path.parent)
    return tasks


def get_task(name: str, extra: dict[str, TaskSpec] | None = None) -> TaskSpec:
    """``extra`` (user-declared tasks) shadows the built-in registry."""
    registry = {**BUILTIN_TASKS, **(extra or {})}
    try:
        return registry[name]
    except KeyError:
        raise KeyError(f"unknown task '{name}'. Known tasks: {', '.join(sorted(registry))}") from None


__all__ = ["BUILTIN_TASKS", "PAPER_TASKS", "TaskSpec", "get_task", "load_task_file", "task_from_dict"]
