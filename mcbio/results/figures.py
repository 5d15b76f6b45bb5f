"""Figures (matplotlib, Agg backend): per-task gain, layer change. Saved as PNG and PDF."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mcbio.files import atomic_open  # noqa: E402


def save_figure(fig, stem: str | Path) -> list[Path]:
    """``<stem>.png`` and ``<stem>.pdf``, each written to a temporary name then renamed."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        target = stem.with_name(f"{stem.name}.{ext}")
        # No creation date in the PDF: regenerating an unchanged figure gives the same bytes.
        metadata = {"CreationDate": None} if ext == "pdf" else None
        with atomic_open(target, "wb") as handle:
            fig.savefig(handle, format=ext, dpi=200, bbox_inches="tight", metadata=metadata)
        paths.append(target)
    plt.close(fig)
    return paths


def gain_figure(gains: Mapping[str, float], a: str, b: str, stem: str | Path, unit: str = "F1 points") -> list[Path]:
    """One bar per task: score(a) - score(b); the dashed line is the mean gain."""
    if not gains:
        raise ValueError(f"gain figure: '{a}' and '{b}' share no task")
    tasks = sorted(gains, key=lambda t: gains[t], reverse=True)
    vals = [gains[t] for t in tasks]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(tasks) + 1.5), 3.2))
    ax.bar(range(len(tasks)), vals, color=["#2a7ab0" if v >= 0 else "#c0504d" for v in vals])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.axhline(sum(vals) / len(vals), color="gray", linestyle="--", linewidth=0.8, label=f"mean {sum(vals) / len(vals):+.2f}")
    ax.set_xticks(range(len(tasks)), tasks, rotation=35, ha="right")
    ax.set_ylabel(f"{a} - {b} ({unit})")
    ax.legend(frameon=False)
    return save_figure(fig, stem)


def gain_comparison_figure(series: Mapping[str, Mapping[str, float]], task_labels: Mapping[str, str], title: str,
                           stem: str | Path, unit: str = "F1 points") -> list[Path]:
    """Figure 2: per-task gain, one group of bars per task (the paper's order), one bar per series
    (the published gain, and this repository's when its runs exist); dashed lines = mean gains."""
    if not series:
        raise ValueError("gain figure: no series (no published nor reproduced pair of scores)")
    tasks = list(dict.fromkeys(t for values in series.values() for t in values))
    width = 0.8 / len(series)
    colors = ["#2a7ab0", "#e39b3a", "#5b9b5b", "#8064a2"]
    fig, ax = plt.subplots(figsize=(max(4.5, 0.8 * len(tasks) + 1.5), 3.3))
    for k, (name, values) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width for i, t in enumerate(tasks) if t in values]
        ys = [values[t] for t in tasks if t in values]
        ax.bar(xs, ys, width=width, color=colors[k % len(colors)], label=f"{name} (mean {sum(ys) / len(ys):+.2f})")
        ax.axhline(sum(ys) / len(ys), color=colors[k % len(colors)], linestyle="--", linewidth=0.8)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(tasks)), [task_labels.get(t, t) for t in tasks], rotation=35, ha="right")
    ax.set_ylabel(f"gain ({unit})")
    ax.set_title(title, fontsize=9)
    ax.legend(frameon=False, fontsize=7)
    return save_figure(fig, stem)


def layer_change_figure(weight_change: Mapping[str, Sequence[float]], cka: Mapping[str, Sequence[float]],
                        stem: str | Path) -> list[Path]:
    """Left: relative weight change per layer; right: 1 - linear CKA to the start, per layer."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2), sharex=True)
    for name, values in weight_change.items():
        left.plot(range(len(values)), values, marker="o", markersize=3, label=name)
    for name, values in cka.items():
        right.plot(range(len(values)), [1 - v for v in values], marker="o", markersize=3, label=name)
    left.set_ylabel(r"$\|W - W_0\|_F / \|W_0\|_F$")
    right.set_ylabel("1 - linear CKA to start")
    for ax in (left, right):
        ax.set_xlabel("layer")
        ax.legend(frameon=False, fontsize=7)
    return save_figure(fig, stem)
