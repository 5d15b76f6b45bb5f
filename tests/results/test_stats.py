import math

import pytest
from scipy import stats as scipy_stats

from mcbio.results.carbon import carbon_footprint
from mcbio.results.stats import (
    ci_half_width,
    mean_std,
    min_max_normalised,
    min_max_score,
    minimal_detectable_effect,
    paired_ttest,
    paired_ttest_power,
    win_probability,
)


def test_paired_ttest_and_ci_match_scipy():
    a = {"t1": 71.2, "t2": 65.0, "t3": 80.4, "t4": 55.5, "t5": 60.1}
    b = {"t1": 70.0, "t2": 64.1, "t3": 80.9, "t4": 52.0, "t5": 59.0, "extra": 1.0}
    cmp = paired_ttest(a, b)
    tasks = sorted(a)
    ref = scipy_stats.ttest_rel([a[t] for t in tasks], [b[t] for t in tasks])
    ci = ref.confidence_interval(0.95)
    assert cmp.n_tasks == 5 and cmp.wins == 4
    assert cmp.t_statistic == pytest.approx(ref.statistic)
    assert cmp.p_value == pytest.approx(ref.pvalue)
    assert (cmp.ci_low, cmp.ci_high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert cmp.mean_diff == pytest.approx(sum(a[t] - b[t] for t in tasks) / 5)
    ci90 = ref.confidence_interval(0.90)
    assert paired_ttest(a, b, 0.90).ci_low == pytest.approx(ci90.low)


def test_paired_ttest_needs_two_tasks():
    with pytest.raises(ValueError, match="at least 2"):
        paired_ttest({"t": 1.0}, {"t": 2.0})


def test_ci_half_width_is_the_paired_ttests():
    a = {"t1": 71.2, "t2": 65.0, "t3": 80.4, "t4": 55.5}
    b = {"t1": 70.0, "t2": 64.1, "t3": 80.9, "t4": 52.0}
    cmp = paired_ttest(a, b)
    assert ci_half_width(cmp.std_diff, 4) == pytest.approx((cmp.ci_high - cmp.ci_low) / 2)


@pytest.mark.parametrize("sd, n", [(2.18, 27), (1.0, 3), (0.5, 54), (3.0, 2)])
def test_the_minimal_detectable_effect_has_the_asked_power_under_the_noncentral_t(sd, n):
    mde = minimal_detectable_effect(sd, n)
    # Power computed here from scipy's noncentral t directly: reject when |T| > t_{0.975, n-1}.
    crit = scipy_stats.t.ppf(0.975, n - 1)
    nc = mde * math.sqrt(n) / sd
    power = scipy_stats.nct.sf(crit, n - 1, nc) + scipy_stats.nct.sf(crit, n - 1, -nc)
    assert power == pytest.approx(0.80, abs=1e-9)
    # The t-test needs more than the normal approximation's effect, most at small n.
    assert mde > (scipy_stats.norm.ppf(0.975) + scipy_stats.norm.ppf(0.80)) * sd / math.sqrt(n)
    # A stricter power or level needs a larger effect.
    assert minimal_detectable_effect(sd, n, power=0.9) > mde
    assert minimal_detectable_effect(sd, n, alpha=0.01) > mde


def test_the_minimal_detectable_effect_tends_to_the_normal_formula_for_large_n():
    z = scipy_stats.norm.ppf(0.975) + scipy_stats.norm.ppf(0.80)
    assert minimal_detectable_effect(2.0, 20000) == pytest.approx(z * 2.0 / math.sqrt(20000), rel=1e-3)
    assert minimal_detectable_effect(2.0, 27) == pytest.approx(z * 2.0 / math.sqrt(27), rel=0.1)


def test_power_matches_a_published_sample_size_table():
    # G*Power's paired t-test example: d = 0.5, two-sided alpha 0.05, power 0.8 -> 34 pairs, actual power 0.8077775.
    assert paired_ttest_power(0.5, 1.0, 34) == pytest.approx(0.8077775, abs=1e-6)
    assert paired_ttest_power(0.5, 1.0, 33) < 0.80 < paired_ttest_power(0.5, 1.0, 34)
    assert minimal_detectable_effect(1.0, 34) < 0.5 < minimal_detectable_effect(1.0, 33)
    assert paired_ttest_power(0.0, 1.0, 10) == pytest.approx(0.05)


def test_the_minimal_detectable_effect_refuses_what_it_cannot_compute():
    assert minimal_detectable_effect(0.0, 10) == 0.0
    with pytest.raises(ValueError, match="power must be in"):
        minimal_detectable_effect(1.0, 10, alpha=0.05, power=0.04)
    with pytest.raises(ValueError, match="at least 2"):
        minimal_detectable_effect(1.0, 1)


def test_mean_std_uses_sample_std():
    assert mean_std([1.0, 2.0, 3.0, 4.0]) == (2.5, pytest.approx(math.sqrt(5 / 3)))
    assert mean_std([3.0]) == (3.0, 0.0)


# Hand-computed example: 3 models, 2 tasks.
#   task A: x=80, y=70, z=60 -> min-max x=1, y=0.5, z=0
#   task B: x=50, y=50, z=90 -> min-max x=0, y=0,   z=1
#   Min-Max score: x=0.5, y=0.25, z=0.5
#   Win probability (pairs per model: 2 tasks x 2 opponents = 4):
#     x: A beats y,z (2); B ties y (0.5), loses z (0) -> 2.5/4 = 0.625
#     y: A loses x, beats z (1); B ties x (0.5), loses z -> 1.5/4 = 0.375
#     z: A loses both (0); B beats both (2)            -> 2/4   = 0.5
SCORES = {"x": {"A": 80, "B": 50}, "y": {"A": 70, "B": 50}, "z": {"A": 60, "B": 90}}


def test_min_max_hand_example():
    norm = min_max_normalised(SCORES)
    assert norm["y"] == {"A": 0.5, "B": 0.0}
    assert min_max_score(SCORES) == {"x": 0.5, "y": 0.25, "z": 0.5}


def test_win_probability_hand_example():
    wp = win_probability(SCORES)
    assert wp == {"x": 0.625, "y": 0.375, "z": 0.5}
    assert sum(wp.values()) == pytest.approx(len(SCORES) / 2)


def test_aggregates_ignore_tasks_not_shared():
    scores = {"x": {"A": 1.0, "C": 5.0}, "y": {"A": 0.0}}
    assert win_probability(scores) == {"x": 1.0, "y": 0.0}


def test_carbon_hand_example():
    # 1,000 GPU-h x 0.7 kW x PUE 1.2 = 840 kWh; x 34 g/kWh = 28.56 kg CO2eq.
    est = carbon_footprint(1000.0, tdp_w=700, pue=1.2, grid_g_per_kwh=34)
    assert est.energy_kwh == pytest.approx(840.0)
    assert est.co2_kg == pytest.approx(28.56)
    with pytest.raises(ValueError, match="pue"):
        carbon_footprint(1.0, 700, -1, 34)
