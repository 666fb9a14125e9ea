"""What a metric is: its direction, range and aggregation, declared once (CONVENTIONS habit 13).

A metric turns each item into a small vector of statistics and the corpus value into a function of
their sum. Mean metrics (accuracy, ROUGE, embedding similarity) have one statistic, the item's score,
and the corpus value is their mean; corpus metrics (BLEU, chrF, TER) sum n-gram or edit counts and
compute the value from the sums, exactly as sacreBLEU does. Confidence intervals, paired tests and
repeats resample items and recompute the SAME statistic from summed statistics, so a CI or a
difference is always on the scale of the value it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Sequence

import numpy as np


class Direction(str, Enum):
    """Which way is better. Everything that ranks or words a comparison asks the metric."""

    HIGHER = "higher"
    LOWER = "lower"


@dataclass(frozen=True)
class MetricValue:
    """One number for the store: value, optional 95% CI, anything structured in `extra`."""

    name: str
    """Metric name in the store, e.g. `accuracy`, `latency_p95`."""
    value: float | None
    """The number (None for structured metrics such as the confusion matrix)."""
    ci_low: float | None = None
    """Lower end of the bootstrap 95% interval, when there is one."""
    ci_high: float | None = None
    """Upper end of the bootstrap 95% interval."""
    extra: dict = field(default_factory=dict)
    """Anything structured (the confusion matrix, sample size, resamples, seed)."""


Stats = Callable[[str | None, Sequence[str]], np.ndarray]
"""(prediction, references) -> one item's statistics vector; a None prediction (unreadable reply) is wrong."""
Total = Callable[[np.ndarray, int], np.ndarray]
"""(summed statistics [..., d], item count) -> metric value(s) over the leading axes."""


@dataclass(frozen=True)
class Metric:
    """A metric as everything downstream sees it: statistics, total, direction, range, kind."""

    name: str
    """Registry name (what a task's `metric` says)."""
    description: str
    """One line for help texts and the report."""
    stats: Stats
    """(prediction, references) -> statistics vector."""
    total: Total
    """(summed statistics [..., d], item count) -> value(s); vectorised over leading axes."""
    direction: Direction = Direction.HIGHER
    """Higher or lower is better: ranking, crossover, the verdict's "better/worse" read it."""
    low: float = 0.0
    """Lowest value the metric takes."""
    high: float | None = 1.0
    """Highest value (None: unbounded, e.g. TER, which counts edits per reference word)."""
    corpus: bool = False
    """True: the corpus value is computed from summed statistics (BLEU, chrF, TER), not the mean of
    the items' own scores; False: it is the mean of per-item scores (accuracy, ROUGE)."""
    binary: bool = False
    """Per-item score is 0/1 (exact paired test: McNemar); otherwise continuous (paired bootstrap)."""
    item_score: Callable[[np.ndarray], float] | None = None
    """An item's own score from its statistics when it differs from `total` on one item (sentence BLEU
    smooths); None: `total(stats, 1)`."""
    many: Callable[[Sequence[str | None], Sequence[Sequence[str]]], np.ndarray] | None = None
    """Batched `stats` for metrics that pay per call (an embedding model); None: `stats` per item."""
    needs_labels: bool = False
    """True for label metrics: a free-text task main-metric'd with one of them gets a warning."""

    @property
    def higher_is_better(self) -> bool:
        return self.direction is Direction.HIGHER

    def better(self, a: float, b: float) -> bool:
        """a strictly better than b."""
        return a > b if self.higher_is_better else a < b

    def key(self, value: float) -> float:
        """Sort key: larger is better whatever the direction (`max(arms, key=...)`)."""
        return value if self.higher_is_better else -value

    def gain(self, difference: float) -> float:
        """A raw difference b - a as an improvement of b over a (positive: b better)."""
        return difference if self.higher_is_better else -difference

    @property
    def span(self) -> float:
        """Width of the range for unit scaling (100 for an unbounded 0-100+ metric such as TER)."""
        return (self.high if self.high is not None else 100.0) - self.low

    def stats_many(self, predictions: Sequence[str | None], references: Sequence[Sequence[str]]) -> np.ndarray:
        """[items, d] statistics of aligned predictions and reference lists."""
        if self.many is not None:
            return np.asarray(self.many(predictions, references), dtype=float).reshape(len(predictions), -1)
        rows = [np.asarray(self.stats(p, list(refs)), dtype=float) for p, refs in zip(predictions, references)]
        return np.array(rows).reshape(len(rows), -1)

    def value_of(self, stats: np.ndarray) -> float:
        """The corpus value of an [items, d] statistics matrix."""
        stats = np.asarray(stats, dtype=float)
        return float(self.total(stats.sum(0), len(stats))) if len(stats) else float("nan")

    def item_from_stats(self, stats: np.ndarray) -> float:
        stats = np.asarray(stats, dtype=float)
        return float(self.item_score(stats) if self.item_score else self.total(stats[None, :], 1)[0])

    def item(self, prediction: str | None, references: str | Sequence[str]) -> float:
        """One item's own score on the metric's scale (a sentence-level BLEU, a 0/1 hit, ...)."""
        refs = [references] if isinstance(references, str) else list(references)
        return self.item_from_stats(self.stats_many([prediction], [refs])[0])

    def unit(self, score: float) -> float:
        """An item score mapped to [0, 1] in the metric's own direction (stored as `correct`)."""
        return float(min(1.0, max(0.0, (score - self.low) / self.span)))


def per_item_loop(total_one: Callable[[np.ndarray], float]) -> Total:
    """A `total` over leading axes from a function of one summed vector (library scorers take one)."""
    def total(sums: np.ndarray, n: int) -> np.ndarray:
        sums = np.asarray(sums, dtype=float)
        flat = sums.reshape(-1, sums.shape[-1])
        return np.array([total_one(row) for row in flat]).reshape(sums.shape[:-1])
    return total


def mean_total(sums: np.ndarray, n: int) -> np.ndarray:
    """Mean of the one per-item statistic."""
    return np.asarray(sums, dtype=float)[..., 0] / max(n, 1)
