import math

import pytest
from scipy import stats as scipy_stats

from mcbio.results.carbon import carbon_footprint
from mcbio.results.stats import mean_std, min_max_normalised, min_max_score, paired_ttest, win_probability


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
