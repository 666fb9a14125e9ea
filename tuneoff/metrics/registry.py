"""The metric registry: every metric a task may name, registered once with its direction and range."""

from __future__ import annotations

from ..errors import TuneoffError, did_you_mean
from .base import Metric
from .embedding import EMBEDDING_METRICS
from .labels import LABEL_METRICS
from .references import REFERENCE_METRICS

METRICS: dict[str, Metric] = {m.name: m for m in [*LABEL_METRICS, *REFERENCE_METRICS, *EMBEDDING_METRICS]}
"""Metrics by name: the one source of truth (task specs name these; the README lists them)."""


def get_metric(name: str, field: str = "metric") -> Metric:
    if name not in METRICS:
        raise TuneoffError(f"unknown metric '{name}'", field=field,
                           hint=did_you_mean(name, list(METRICS)) + f" (known: {', '.join(METRICS)})")
    return METRICS[name]


def free_text_warning(metric: str, labels) -> str | None:
    """A warning when a free-text task (no label set) is scored by a label metric (the default accuracy):
    string identity of generated text is almost never what the user means."""
    if labels or not get_metric(metric).needs_labels:
        return None
    return (f"task has no label set (free text) but its main metric is '{metric}' (identical strings); "
            "name a reference metric, e.g. `metric: rougeL` or `metric: chrf`")
