"""Scoring a run: each metric's value and bootstrap CI from per-item statistics, and the statistics
kept per item (for the paired tests, repeats and the item explorer)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import MetricValue
from .bootstrap import bootstrap_ci
from .registry import get_metric

References = Sequence[Sequence[str]]


def as_references(targets: Sequence[str | Sequence[str]]) -> list[list[str]]:
    """Each item's reference list (a single target string is a one-reference list)."""
    return [[t] if isinstance(t, str) else list(t) for t in targets]


def metric_value(name: str, stats: np.ndarray, *, seed: int = 0, resamples: int = 1000) -> MetricValue:
    """The metric's corpus value and percentile CI from [items, d] statistics (the same statistic)."""
    metric = get_metric(name)
    stats = np.asarray(stats, dtype=float)
    n = len(stats)
    value = metric.value_of(stats) if n else None
    low, high = bootstrap_ci(stats, metric.total, resamples=resamples, seed=seed) if n else (None, None)
    return MetricValue(name, value, low, high, extra={"n": n, "resamples": resamples, "seed": seed,
                                                      "direction": metric.direction.value})


def main_metric(name: str, predictions: Sequence[str | None], targets: Sequence[str | Sequence[str]], *,
                seed: int = 0, resamples: int = 1000) -> MetricValue:
    """A metric with its bootstrap 95% CI over aligned predictions and targets (or reference lists)."""
    stats = get_metric(name).stats_many(predictions, as_references(targets))
    return metric_value(name, stats, seed=seed, resamples=resamples)


def item_scores(names: Sequence[str], predictions: Sequence[str | None],
                references: References) -> dict[str, np.ndarray]:
    """{metric: [items, d] statistics} for every named metric."""
    return {name: get_metric(name).stats_many(predictions, references) for name in names}
