"""The verdict over repeated runs: each loss's mean, standard deviation and 95% confidence interval,
the losses ranked, and which of them cannot be told apart.

On a small test split one example moves an error by a fraction of a point, and the spread between
training seeds is often larger than the gap between two losses. The verdict therefore compares
losses by Welch's t-test on their repeated runs (unequal variances, as the losses differ), with
Holm's correction for the number of pairs, and says "not significantly different" rather than
ranking a noise-level gap.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

from scipy import stats

#: Two-sided level of the confidence intervals and of the pairwise tests.
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Spread:
    """Mean, sample standard deviation and the Student-t confidence interval of the mean."""

    mean: float
    sd: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float], *, bounds: tuple[float, float] | None = None) -> Spread:
        """The spread of ``values``; ``bounds`` (e.g. 0 and 100 for a percentage) clip the
        interval to the values the metric can take."""
        n = len(values)
        mean = statistics.fmean(values)
        sd = statistics.stdev(values) if n > 1 else 0.0
        if n < 2:
            return cls(mean, sd, math.nan, math.nan, n)
        half = stats.t.ppf(0.5 + CONFIDENCE / 2, df=n - 1) * sd / math.sqrt(n)
        low, high = mean - half, mean + half
        if bounds is not None:
            low, high = max(low, bounds[0]), min(high, bounds[1])
        return cls(mean, sd, low, high, n)


def welch_p_value(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test that ``a`` and ``b`` have the same mean.

    Runs without spread (every seed gave the same number) make the statistic undefined: equal
    means are then indistinguishable (p = 1) and different ones distinguishable (p = 0).
    """
    if len(a) < 2 or len(b) < 2:
        return math.nan
    if statistics.stdev(a) == 0 and statistics.stdev(b) == 0:
        return 1.0 if statistics.fmean(a) == statistics.fmean(b) else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def holm(p_values: Mapping[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    """Holm's step-down adjustment of a family of p-values (NaN stays NaN)."""
    known = sorted((p, pair) for pair, p in p_values.items() if not math.isnan(p))
    adjusted: dict[tuple[str, str], float] = {
        pair: math.nan for pair, p in p_values.items() if math.isnan(p)
    }
    running = 0.0
    for rank, (p, pair) in enumerate(known):
        running = max(running, min(1.0, (len(known) - rank) * p))
        adjusted[pair] = running
    return adjusted


@dataclass(frozen=True)
class Verdict:
    """Losses ranked by the mean of one metric, with their spreads and the pairs whose
    difference is not significant at the :data:`CONFIDENCE` level."""

    metric: str
    lower_is_better: bool
    ranking: tuple[str, ...]
    spreads: Mapping[str, Spread]
    adjusted_p: Mapping[tuple[str, str], float]

    def indistinguishable(self, loss: str) -> tuple[str, ...]:
        """The other losses whose difference from ``loss`` is not significant."""
        others = []
        for other in self.ranking:
            if other == loss:
                continue
            p = self.adjusted_p.get((loss, other), self.adjusted_p.get((other, loss), math.nan))
            if math.isnan(p) or p >= 1 - CONFIDENCE:
                others.append(other)
        return tuple(others)


def verdict(
    samples: Mapping[str, Sequence[float]],
    *,
    metric: str,
    lower_is_better: bool,
    bounds: tuple[float, float] | None = None,
) -> Verdict:
    """Ranks the losses of ``samples`` (loss -> the metric of each repeated run) by their mean and
    tests every pair; ``bounds`` clip the confidence intervals (see :meth:`Spread.of`)."""
    spreads = {loss: Spread.of(values, bounds=bounds) for loss, values in samples.items()}
    sign = 1.0 if lower_is_better else -1.0
    ranking = tuple(sorted(samples, key=lambda loss: sign * spreads[loss].mean))
    raw = {(a, b): welch_p_value(samples[a], samples[b]) for a, b in combinations(ranking, 2)}
    return Verdict(
        metric=metric,
        lower_is_better=lower_is_better,
        ranking=ranking,
        spreads=spreads,
        adjusted_p=holm(raw),
    )
