"""Rates, cost and length figures of a run (no reference needed, or only its length)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import MetricValue


def rate(name: str, flags: Sequence[bool]) -> MetricValue:
    return MetricValue(name, float(np.mean(flags)) if len(flags) else 0.0, extra={"count": int(sum(flags))})


def cost_metrics(tokens_in: Sequence[int], tokens_out: Sequence[int], latency: Sequence[float],
                 batch_size: Sequence[int]) -> list[MetricValue]:
    """Tokens per request (mean), latency per request (p50/p95 of the wait) and amortised seconds per item."""
    if not len(latency):
        return []
    lat = np.asarray(latency, dtype=float)
    return [MetricValue("tokens_in_mean", float(np.mean(tokens_in))),
            MetricValue("tokens_out_mean", float(np.mean(tokens_out))),
            MetricValue("latency_p50", float(np.percentile(lat, 50))),
            MetricValue("latency_p95", float(np.percentile(lat, 95))),
            # a batch's wall time is shared by its requests: this is the throughput cost per item
            MetricValue("seconds_per_item", float(np.mean(lat / np.maximum(np.asarray(batch_size), 1))))]


def words(text: str | None) -> int:
    return len((text or "").split())


def length_metrics(outputs: Sequence[str | None], references: Sequence[Sequence[str]],
                   truncated: Sequence[bool]) -> list[MetricValue]:
    """Reply length in words (mean), the references' (mean over each item's references), their ratio
    (total reply words / total mean-reference words: > 1 is longer than the people wrote) and the share of
    replies cut at the generation cap (`finish_reason` "length")."""
    if not len(outputs):
        return []
    out = np.array([words(o) for o in outputs], dtype=float)
    ref = np.array([np.mean([words(r) for r in refs]) if len(refs) else 0.0 for refs in references])
    return [MetricValue("output_words_mean", float(out.mean())),
            MetricValue("reference_words_mean", float(ref.mean())),
            MetricValue("length_ratio", float(out.sum() / ref.sum()) if ref.sum() else None),
            rate("truncated_rate", list(truncated))]
