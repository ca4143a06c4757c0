"""The verdict's statistics against scipy and hand-worked cases."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from analysis.verdict import Spread, holm, verdict, welch_p_value


def test_spread_is_the_student_t_interval_of_the_mean() -> None:
    values = [1.39, 1.67, 1.11, 1.94]
    spread = Spread.of(values)
    low, high = stats.t.interval(0.95, df=3, loc=sum(values) / 4, scale=stats.sem(values))
    assert (spread.low, spread.high) == pytest.approx((low, high))
    assert spread.sd == pytest.approx(stats.tstd(values)) and spread.n == 4
    single = Spread.of([2.0])
    assert single.mean == 2.0 and math.isnan(single.low) and math.isnan(single.high)


def test_welch_p_value_and_runs_without_spread() -> None:
    a, b = [1.0, 1.2, 0.9], [2.0, 2.3, 1.8]
    assert welch_p_value(a, b) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert welch_p_value([1.0, 1.0], [1.0, 1.0]) == 1.0
    assert welch_p_value([1.0, 1.0], [2.0, 2.0]) == 0.0
    assert math.isnan(welch_p_value([1.0], [2.0, 3.0]))


def test_holm_adjusts_step_down_and_stays_monotone() -> None:
    raw = {("a", "b"): 0.01, ("a", "c"): 0.04, ("b", "c"): 0.03, ("c", "d"): math.nan}
    adjusted = holm(raw)
    # Sorted 0.01, 0.03, 0.04 -> 3 * 0.01, max(0.03, 2 * 0.03), max(0.06, 1 * 0.04).
    assert adjusted[("a", "b")] == pytest.approx(0.03)
    assert adjusted[("b", "c")] == pytest.approx(0.06)
    assert adjusted[("a", "c")] == pytest.approx(0.06)
    assert math.isnan(adjusted[("c", "d")])


def test_verdict_ranks_by_mean_and_ties_what_noise_cannot_separate() -> None:
    samples = {
        "noisy": [1.1, 2.5, 0.3],
        "good": [0.50, 0.52, 0.48],
        "bad": [5.0, 5.1, 4.9],
    }
    result = verdict(samples, metric="error_simple", lower_is_better=True)
    assert result.ranking == ("good", "noisy", "bad")
    assert result.indistinguishable("good") == ("noisy",)
    assert result.indistinguishable("bad") == ("noisy",)
    higher = verdict(samples, metric="map_at_r", lower_is_better=False)
    assert higher.ranking == ("bad", "noisy", "good")


def test_intervals_are_clipped_to_what_the_metric_can_take() -> None:
    spread = Spread.of([0.0, 0.28, 1.1], bounds=(0.0, 100.0))
    assert spread.low == 0.0 and spread.high > 1.1
