"""Carbon account (Table 5): GPU-hours x TDP x PUE x grid carbon intensity."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CarbonEstimate:
    gpu_hours: float
    energy_kwh: float
    co2_kg: float


def carbon_footprint(gpu_hours: float, tdp_w: float, pue: float, grid_g_per_kwh: float) -> CarbonEstimate:
    """Energy = GPU-hours x TDP (kW) x PUE; emissions = energy x grid intensity.

    GPUs are assumed to draw their full TDP for the whole run (an upper bound, as in
    the usual ML carbon accounts); PUE adds the data centre's cooling and overheads.
    """
    for name, value in (("gpu_hours", gpu_hours), ("tdp_w", tdp_w), ("pue", pue), ("grid_g_per_kwh", grid_g_per_kwh)):
        if value < 0:
            raise ValueError(f"carbon_footprint: '{name}' must be >= 0, got {value}")
    energy_kwh = gpu_hours * tdp_w / 1000.0 * pue
    return CarbonEstimate(gpu_hours=gpu_hours, energy_kwh=energy_kwh, co2_kg=energy_kwh * grid_g_per_kwh / 1000.0)
