"""Typed configs of ablation grids: a base experiment config + one dotlist of overrides per cell.

A grid file (``ablations/<name>/grid.yaml``) is loaded as :class:`GridRunConfig`; every
cell is then loaded as :class:`GridCellConfig` from ``base_config`` with the grid's
``common_overrides`` and the cell's own overrides, through ``load_config``, so a typo in
any cell fails before anything is submitted.

Content types and quality signals are the curation's (:mod:`mcbio.config.curation`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from mcbio.config.schema import PretrainRunConfig, RunConfig, choice

from mcbio.config.curation import CONTENT_TYPES, SCORE_KEYS as QUALITY_SIGNALS


@dataclass
class DataSelectionConfig:
    """Which annotated passages a cell trains on (fields ``type``, ``edu``, ``cont``, ``writ``, ``term``).

    Applied to an annotated JSONL corpus before tokenisation; the selected documents are
    written to the cell's run folder and become its ``data.corpus``.
    """

    enabled: bool = False
    # Annotated JSONL file or folder; None = the cell's data.corpus (None = the sample corpus).
    source: Optional[str] = None
    # Content-type ablation: passages of these types are removed.
    drop_types: List[str] = field(default_factory=list)
    # Cap on passages per type (seeded subsample), to balance the corpus across types.
    max_per_type: Optional[int] = None
    # Quality-signal filters: keep a passage when signal >= threshold for every listed signal.
    min_scores: Dict[str, float] = field(default_factory=dict)
    # A passage without a needed annotation: fail naming file and line, keep it, or drop it.
    missing_annotation: str = choice("error", "error", "keep", "drop")
    # Random-removal control: drop this share of passages at random (seeded, per passage id).
    random_drop_fraction: float = 0.0
    seed: int = 42


@dataclass
class GridCellConfig(PretrainRunConfig):
    """One cell: a pretraining experiment (+ evaluation) on a selected corpus."""

    selection: DataSelectionConfig = field(default_factory=DataSelectionConfig)
    # Filled by the grid's planner.
    grid_name: str = ""
    cell_name: str = ""

    def check(self) -> None:
        from mcbio.config.loader import ConfigError

        super().check()
        sel = self.selection
        for t in sel.drop_types:
            if t not in CONTENT_TYPES:
                raise ConfigError(f"invalid value in 'selection.drop_types': {t!r}. Choose from: {', '.join(CONTENT_TYPES)}")
        for key, value in sel.min_scores.items():
            if key not in QUALITY_SIGNALS:
                raise ConfigError(f"unknown key 'selection.min_scores.{key}'. Valid keys: {', '.join(QUALITY_SIGNALS)}")
            if not 1 <= value <= 10:
                raise ConfigError(f"'selection.min_scores.{key}' must be in [1, 10] (scores are 1-10), got {value}")
        if not 0.0 <= sel.random_drop_fraction < 1.0:
            raise ConfigError("'selection.random_drop_fraction' must be in [0, 1)")


@dataclass
class GridTableConfig:
    caption: str = "Ablation: fine-tuning results per cell (test set, mean over seeds)"
    # Records whose extra.primary is true (each task's paper metric); false = every metric.
    primary_only: bool = True
    scale: float = 100.0
    decimals: int = 1
    decimal_comma: bool = False


@dataclass
class GridRunConfig(RunConfig):
    name: str = "grid"
    # The experiment every cell starts from; a relative path is from this grid file's folder.
    base_config: str = "../../experiments/base_clm_detour/config.yaml"
    # Preset applied to every cell (e.g. smoke); the grid's own preset file sets it.
    cell_preset: Optional[str] = None
    common_overrides: List[str] = field(default_factory=list)
    # Explicit cells: name -> dotlist overrides.
    cells: Dict[str, List[str]] = field(default_factory=dict)
    # Cartesian product: key -> values; adds one cell per combination, named key=value,...
    product: Dict[str, List[str]] = field(default_factory=dict)
    # Run only these cells (empty = all).
    only_cells: List[str] = field(default_factory=list)
    # Jobs of the array running at once (None = the cells' resources.array_parallelism).
    array_parallelism: Optional[int] = None
    # The results store (records/, runs/, tables/) of every cell; relative to the working directory.
    results_dir: str = "results"
    table: GridTableConfig = field(default_factory=GridTableConfig)

    def check(self) -> None:
        from mcbio.config.loader import ConfigError

        if not self.cells and not self.product:
            raise ConfigError("grid has no cells: set 'cells' and/or 'product'")
        for key, values in self.product.items():
            if not values:
                raise ConfigError(f"'product.{key}' has no values")
