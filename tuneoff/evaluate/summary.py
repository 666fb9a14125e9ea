"""A finished run's metrics, computed from what the store holds (never from in-memory state).

Reading back from the store means a resumed run is summarised over all its items, the ones done
before the interruption included, exactly as a run that never stopped.
"""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np

from ..metrics import (MetricValue, cost_metrics, get_metric, label_metrics, metric_value, rate)
from ..metrics.usage import length_metrics
from ..prompting.arm import TaskContext
from ..store import Store
from .checks import content_checks


def references_of(row, extra: dict) -> list[str]:
    """A stored prediction's references: the list kept when there were several, else its target."""
    return list(extra.get("references") or [row["target"]])


def stored_stats(name: str, rows: Sequence, extras: Sequence[dict]) -> np.ndarray:
    """[items, d] statistics of metric `name`: as stored with each prediction, recomputed from the stored
    prediction and references for runs stored before statistics were kept (or another metric)."""
    kept = [e.get("stats", {}).get(name) for e in extras]
    if rows and all(k is not None for k in kept):
        return np.array(kept, dtype=float).reshape(len(rows), -1)
    return get_metric(name).stats_many([r["prediction"] for r in rows],
                                       [references_of(r, e) for r, e in zip(rows, extras)])


def summarise(store: Store, run_id: int, ctx: TaskContext, *, wall_seconds: float = 0.0,
              seed: int = 0) -> dict[str, MetricValue]:
    """Compute and store a run's metrics; the main metric comes first in the returned dict."""
    rows = store.predictions_with_costs(run_id)
    extras = [json.loads(r["extra_json"] or "{}") for r in rows]
    predictions = [r["prediction"] for r in rows]
    targets = [r["target"] for r in rows]
    values = [metric_value(name, stored_stats(name, rows, extras), seed=seed) for name in (ctx.metric, *ctx.secondary)]
    if ctx.labels:
        values += label_metrics(predictions, targets, ctx.labels, seed=seed)
        values.append(rate("hallucinated_label_rate", [bool(e.get("hallucinated")) for e in extras]))
    else:  # free text: how long the replies are and how many the cap cut
        values += length_metrics([r["output"] for r in rows], [references_of(r, e) for r, e in zip(rows, extras)],
                                 [r["finish_reason"] == "length" for r in rows])
    values.append(rate("format_violation_rate", [bool(e.get("violation")) for e in extras]))
    values += content_checks(store, run_id, rows, extras, ctx, seed=seed)
    values += cost_metrics([r["tokens_in"] or 0 for r in rows], [r["tokens_out"] or 0 for r in rows],
                           [r["latency_s"] or 0.0 for r in rows], [r["batch_size"] or 1 for r in rows])
    cached = sum(bool(e.get("cached")) for e in extras)
    values += [MetricValue("cache_hits", float(cached)), MetricValue("cache_misses", float(len(rows) - cached)),
               MetricValue("n_items", float(len(rows))), MetricValue("wall_seconds", wall_seconds)]
    for v in values:
        store.set_metric(run_id, v.name, v.value, v.ci_low, v.ci_high, v.extra)
    return {v.name: v for v in values}
