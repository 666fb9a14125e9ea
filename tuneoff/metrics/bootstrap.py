"""Resampling statistics over per-item statistics: percentile CIs, the paired bootstrap between two
systems (Koehn 2004, as sacreBLEU's `paired_bs`), and the CI over repeats x items. Each recomputes
the metric's own total on resampled sums, so a CI or a difference has the value's scale."""

from __future__ import annotations

from typing import Callable

import numpy as np

Total = Callable[[np.ndarray, int], np.ndarray]


def bootstrap_ci(stats: np.ndarray, total: Total, *, resamples: int = 1000, seed: int = 0,
                 alpha: float = 0.05) -> tuple[float, float]:
    """Percentile CI of `total` over item resamples drawn with replacement (seeded: reports repeat)."""
    stats = np.asarray(stats, dtype=float)
    n = len(stats)
    if n == 0:
        return float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    values = total(stats[idx].sum(axis=1), n)
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, total: Total, *, resamples: int = 1000,
                     seed: int = 0) -> tuple[float, float]:
    """(difference total(b) - total(a), p-value) by paired bootstrap resampling, as sacreBLEU's
    `paired_bs`: both systems are resampled on the same items, and p is the share of resamples whose
    centred |difference| exceeds the observed one (with the +1 correction)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n = len(a)
    if n == 0:
        return 0.0, 1.0
    observed = float(total(b.sum(0), n) - total(a.sum(0), n))
    # drawn as sacreBLEU draws them: the same seed gives sacreBLEU's resamples and its p-value
    idx = np.random.default_rng(seed).choice(n, size=(resamples, n), replace=True)
    diffs = np.abs(total(b[idx].sum(axis=1), n) - total(a[idx].sum(axis=1), n))
    centred = diffs - diffs.mean()
    return observed, float((np.sum(centred > abs(observed)) + 1) / (resamples + 1))


def _mean(sums: np.ndarray, n: int) -> np.ndarray:
    return sums[..., 0] / max(n, 1)


def repeated_ci(stats: np.ndarray, total: Total = _mean, resamples: int = 2000, seed: int = 0,
                alpha: float = 0.05) -> tuple[float, float]:
    """Percentile CI of a runs x items x d statistics tensor's total, resampling runs and items
    together, `total` defaulting to the mean (each resample draws runs with replacement and items with replacement, the same items
    for every drawn run): the interval widens with run-to-run variance as well as item variance.
    The total of a resample is taken per drawn run and averaged, as the arm's value is the mean of
    its runs' values."""
    stats = np.asarray(stats, dtype=float)
    stats = stats[..., None] if stats.ndim == 2 else stats  # a runs x items score matrix: one statistic
    runs, items = stats.shape[:2]
    rng = np.random.default_rng(seed)
    values = np.empty(resamples)
    for k in range(resamples):
        r, i = rng.integers(0, runs, runs), rng.integers(0, items, items)
        values[k] = float(np.mean(total(stats[np.ix_(r, i)].sum(axis=1), items)))
    return float(np.quantile(values, alpha / 2)), float(np.quantile(values, 1 - alpha / 2))
