"""Task registry: where a task's splits live, their format, type and metric."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

RESOURCES = Path(__file__).resolve().parents[1] / "resources" / "sample_tasks"


@dataclass
class TaskSpec:
    name: str
    type: str  # ner | single_label | multi_label
    format: str  # conll | brat | tsv | jsonl
    splits: dict[str, str] = field(default_factory=dict)  # split -> path (relative to root)
    root: str = ""  # "" = the package's sample tasks; "shared" = paths.shared_data
    metric: str = "strict_f1"

    def path(self, split: str, shared_data: str | None) -> Path:
        if split not in self.splits:
            raise KeyError(f"task '{self.name}' has no '{split}' split (has: {', '.join(self.splits)})")
        if self.root == "shared":
            if not shared_data:
                raise FileNotFoundError(
                    f"task '{self.name}' reads the shared data: set paths.shared_data=PATH or MCBIO_DATA=PATH"
                )
            base = Path(shared_data)
        else:
            base = RESOURCES
        path = base / self.splits[split]
        if not path.exists():
            raise FileNotFoundError(f"task '{self.name}': {split} split not found at {path}")
        return path


BUILTIN_TASKS: dict[str, TaskSpec] = {
    "mini_ner": TaskSpec(
        name="mini_ner", type="ner", format="conll",
        splits={s: f"mini_ner/{s}.conll" for s in ("train", "dev", "test")},
    ),
}


def get_task(name: str) -> TaskSpec:
    try:
        return BUILTIN_TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task '{name}'. Known tasks: {', '.join(sorted(BUILTIN_TASKS))}") from None
