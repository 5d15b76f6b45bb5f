"""Task registry: where a task's splits live, their format, type, metric and reader options.

Built-in tasks are declared below; users declare more in YAML (``custom_tasks`` in an
evaluation config, or files listed in ``task_files``) with the same keys as :class:`TaskSpec`::

    my_task:
      type: multi_label          # ner | single_label | multi_label
      format: jsonl              # conll | brat | tsv | csv | jsonl | json | hf_disk | fracco | frasimed | meddialog
      root: /data/my_task        # a folder, or "shared" (paths.shared_data), or "package"
      splits: {train: train.jsonl, dev: dev.jsonl, test: test.jsonl}
      text_field: text
      label_field: labels

Relative ``root`` values in a task file are resolved against that file's folder.

The paper's eight tasks are declared with their published layouts (fields, label rules and
document-level splits as in the datasets' own loaders and the authors' harness; readers in
:mod:`mcbio.evaluate.corpora`), under ``paths.shared_data`` by default:

=================  =========================================================================
``diamed``         ``diamed/splits/{train,validation,test}.json`` (DrBenchmark's files; or a
                   ``save_to_disk`` folder with ``format: hf_disk``): ``clinical_case`` ->
                   ``icd-10`` (22 ICD-10 chapters); ``nan`` / "Plusieurs cas cliniques" /
                   "Aucune annotation" dropped
``fracco_30/100``  ``FRACCO/`` (``ann_txt_files/*.txt`` + ``DetectOnco_Final.csv``):
                   ``expression_CIM`` codes per document, top 30 / 100 by document frequency
``cantemist``      ``FRASIMED/CANTEMIST-FRASIMED/`` (BRAT, ICD-O-3.1 note codes, top 100)
``distemist``      ``FRASIMED/DISTEMIST-FRASIMED/`` (BRAT, SNOMED note codes, top 100)
``meddialog_fr``   ``MedDialog-FR-women/`` (22 UMLS CUIs, ``split`` column, dev = validation)
``quaero_*``       ``quaero/corpus/{train,dev,test}/{EMEA,MEDLINE}`` (BRAT, 10 UMLS groups)
=================  =========================================================================
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from mcbio.config.loader import ConfigError

RESOURCES = Path(__file__).resolve().parents[1] / "resources" / "sample_tasks"
TASK_TYPES = ("ner", "single_label", "multi_label")
FORMATS = ("conll", "brat", "tsv", "csv", "jsonl", "json", "hf_disk", "fracco", "frasimed", "meddialog")
# Formats whose three splits are cut from one folder (document-level split, see mcbio.evaluate.corpora).
DOCUMENT_SPLIT_FORMATS = ("fracco", "frasimed")
CLASSIFICATION_FORMATS = ("tsv", "csv", "jsonl", "json", "fracco", "frasimed", "meddialog")
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
    # Examples whose label contains one of these strings are dropped (DiaMED's unusable
    # cases); the entry "nan" matches a missing label (null, NaN, "nan").
    drop_labels: List[str] = field(default_factory=list)
    # Keep the ``top_k`` labels with the highest document frequency over all documents (ties:
    # label order); documents left without a label are dropped. None = every label.
    top_k: Optional[int] = None
    # Document-level splits (fracco, frasimed): names sorted, shuffled by random.Random(split_seed),
    # then int(f_train * n) / int(f_dev * n) / the rest. Independent of the fine-tuning seed.
    split_seed: int = 42
    split_fractions: List[float] = field(default_factory=lambda: [0.8, 0.1])
    # fracco: the DetectOnco_Final.csv rows kept (its ``label`` column).
    annotation_label: str = "expression_CIM"
    # frasimed: the code system of the BRAT notes kept (``#n<TAB>SYSTEM Tn<TAB>code``).
    code_system: str = ""
    # meddialog: the input text built from a question and its answer.
    text_template: str = "Question: {question}\n\nRéponse: {answer}"
    # meddialog (single table): the column naming each row's split (train / dev / test).
    split_field: str = "split"
    # Where the data comes from, shown when it is missing.
    source: str = ""

    def __post_init__(self) -> None:
        if self.type not in TASK_TYPES:
            raise ConfigError(f"task '{self.name}': type {self.type!r} is not one of {', '.join(TASK_TYPES)}")
        if self.format not in FORMATS:
            raise ConfigError(f"task '{self.name}': format {self.format!r} is not one of {', '.join(FORMATS)}")
        if self.type != "ner" and self.format in ("conll", "brat"):
            raise ConfigError(f"task '{self.name}': format '{self.format}' holds NER data, but type is '{self.type}'")
        if self.type == "ner" and self.format in CLASSIFICATION_FORMATS:
            raise ConfigError(f"task '{self.name}': format '{self.format}' is read as classification data, but type is 'ner'")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"task '{self.name}': top_k must be a positive number of labels (or null), got {self.top_k}")
        if len(self.split_fractions) != 2 or min(self.split_fractions) < 0 or sum(self.split_fractions) > 1:
            raise ConfigError(f"task '{self.name}': split_fractions must be [train, dev] fractions summing to <= 1, "
                              f"got {self.split_fractions}")
        if self.format == "frasimed" and not self.code_system:
            raise ConfigError(f"task '{self.name}': format 'frasimed' needs code_system (e.g. ICD-O-3.1 or SNOMED)")
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
            what = "data" if len(set(self.splits.values())) == 1 else f"{split} split"
            raise FileNotFoundError(
                f"task '{self.name}': {what} not found at {path}.{hint} "
                f"Point the task at your copy with custom_tasks.{self.name}.root=/path/to/folder "
                f"(and .splits.{split}=FILE), or declare it in a task file."
            )
        return path


def _shared(name: str, type_: str, fmt: str, folder: str, ext: str, source: str, **kw) -> TaskSpec:
    return TaskSpec(name=name, type=type_, format=fmt, root="shared", source=source,
                    splits={s: f"{folder}/{s}.{ext}" for s in ("train", "dev", "test")}, **kw)


_WHERE = " Place it under paths.shared_data (or MCBIO_DATA) as shown, or point the task at your copy."

SOURCES = {
    "diamed": "DiaMED is published by DrBenchmark on the Hugging Face Hub (dataset Dr-BERT/DiaMED: a loading "
              "script and data.zip holding splits/train.json, validation.json, test.json); unzip it as "
              "diamed/, or use a datasets.save_to_disk folder with custom_tasks.diamed.format=hf_disk.",
    "fracco": "FrACCO is published on Zenodo (record 17284817, FRACCO.zip: ann_txt_files/ and "
              "DetectOnco_Final.csv); unzip it as FRACCO/.",
    "frasimed": "FRASIMED is published on Zenodo (record 8355629: flat BRAT folders CANTEMIST-FRASIMED/ and "
                "DISTEMIST-FRASIMED/); place them under FRASIMED/.",
    "meddialog": "MedDialog-FR (women's health subset, 22 UMLS CUI labels) is distributed by its authors: "
                 "the MedDialog-FR-women/ folder (multilabel_annotation/dataset_multilabel_meddialog_22labels.csv "
                 "and post-editing/meddialog-fr-women_post-editing.csv), or one CSV/parquet table with question, "
                 "answer, labels and split columns (point splits.* at it).",
    "quaero": "QUAERO French Medical Corpus (BRAT), https://quaerofrenchmed.limsi.fr/.",
}


def _same_folder(name: str, folder: str, **kw) -> TaskSpec:
    """A task whose three splits are cut from one folder (document-level split or a split column)."""
    return TaskSpec(name=name, root="shared", splits={s: folder for s in ("train", "dev", "test")}, **kw)


BUILTIN_TASKS: dict[str, TaskSpec] = {
    "mini_ner": TaskSpec(
        name="mini_ner", type="ner", format="conll", root="package",
        splits={s: f"mini_ner/{s}.conll" for s in ("train", "dev", "test")},
    ),
    # --- the paper's eight tasks, in their published layouts
    "diamed": TaskSpec(
        name="diamed", type="single_label", format="json", root="shared",
        splits={"train": "diamed/splits/train.json", "dev": "diamed/splits/validation.json",
                "test": "diamed/splits/test.json"},
        text_field="clinical_case", label_field="icd-10", label_sep=None,
        drop_labels=["nan", "Plusieurs cas cliniques", "Aucune annotation"], source=SOURCES["diamed"] + _WHERE,
    ),
    "fracco_30": _same_folder("fracco_30", "FRACCO", type="multi_label", format="fracco", top_k=30,
                              source=SOURCES["fracco"] + _WHERE),
    "fracco_100": _same_folder("fracco_100", "FRACCO", type="multi_label", format="fracco", top_k=100,
                               source=SOURCES["fracco"] + _WHERE),
    "cantemist": _same_folder("cantemist", "FRASIMED/CANTEMIST-FRASIMED", type="multi_label", format="frasimed",
                              code_system="ICD-O-3.1", top_k=100, source=SOURCES["frasimed"] + _WHERE),
    "distemist": _same_folder("distemist", "FRASIMED/DISTEMIST-FRASIMED", type="multi_label", format="frasimed",
                              code_system="SNOMED", top_k=100, source=SOURCES["frasimed"] + _WHERE),
    "meddialog_fr": _same_folder("meddialog_fr", "MedDialog-FR-women", type="multi_label", format="meddialog",
                                 label_field="labels", source=SOURCES["meddialog"] + _WHERE),
    "quaero_emea": TaskSpec(
        name="quaero_emea", type="ner", format="brat",
        splits={s: f"quaero/corpus/{s}/EMEA" for s in ("train", "dev", "test")}, source=SOURCES["quaero"],
    ),
    "quaero_medline": TaskSpec(
        name="quaero_medline", type="ner", format="brat",
        splits={s: f"quaero/corpus/{s}/MEDLINE" for s in ("train", "dev", "test")}, source=SOURCES["quaero"],
    ),
    # --- DrBenchmark
    "morfitt": _shared("morfitt", "multi_label", "tsv", "morfitt", "tsv",
                       "MORFITT (qanastek/MORFITT, Zenodo 7893841).",
                       text_field="abstract", label_field="specialities", label_sep="|"),
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
