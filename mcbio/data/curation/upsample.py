"""Quality-ratio upsampling per article, and integer copies of a fractional factor."""

from __future__ import annotations

import math
from typing import Iterable

from mcbio.config.curation import UpsamplingConfig
from mcbio.seeding import stable_unit


def quality_ratio(labels: Iterable[dict], edu_min: int, cont_min: int) -> float:
    labels = list(labels)
    if not labels:
        return 0.0
    good = sum(1 for l in labels if l["edu"] >= edu_min and l["cont"] >= cont_min)
    return good / len(labels)


def upsampling_factor(ratio: float, cfg: UpsamplingConfig) -> float:
    """Coefficient of an article with quality ``ratio`` in [0, 1].

    Ratios are taken in whole percents (the paper's buckets are 1-25 %, 26-50 %, ...):
    0 % -> zero_factor, 100 % -> full_factor, else the first bucket whose bound covers it.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"quality ratio must be in [0, 1], got {ratio}")
    percent = round(ratio * 100)
    # An article with any good passage is never rounded down to "excluded" (0.4 % -> 1 %).
    if percent == 0 and ratio > 0:
        percent = 1
    if percent == 0:
        return cfg.zero_factor
    if percent == 100:
        # 99.6 % rounds to 100 but is not "every passage": keep it in the last open bucket.
        return cfg.full_factor if ratio == 1.0 else cfg.bucket_factors[-1]
    for bound, factor in zip(cfg.bucket_upper_bounds, cfg.bucket_factors):
        if percent <= round(bound * 100):
            return factor
    return cfg.bucket_factors[-1]


def copies(factor: float, key: str, seed: int) -> int:
    """Integer copies with expectation ``factor``: floor plus one more with probability frac,
    decided by a draw fixed by ``(seed, key)`` so that reruns pick the same documents."""
    whole = math.floor(factor)
    frac = factor - whole
    if frac <= 0:
        return whole
    return whole + (1 if stable_unit(seed, key) < frac else 0)
