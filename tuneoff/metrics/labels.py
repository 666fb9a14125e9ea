"""Metrics of single-right-answer tasks (accuracy, exact match, numeric) and the label diagnostics:
the one confusion matrix of the project and macro-F1 over it."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .answers import as_number, normalise_text
from .base import Metric, MetricValue, mean_total


def _hit(ok: bool) -> np.ndarray:
    return np.array([1.0 if ok else 0.0])


def _any_hit(prediction: str | None, references: Sequence[str], same) -> np.ndarray:
    # several references: right when the prediction matches any of them
    return _hit(prediction is not None and any(same(prediction, r) for r in references))


def _numeric_same(prediction: str, reference: str) -> bool:
    p, t = as_number(prediction), as_number(reference)
    return p is not None and t is not None and abs(p - t) < 1e-6 * max(1.0, abs(t))


LABEL_METRICS = [
    Metric("accuracy", "share of items whose prediction equals the target label (0-1)",
           lambda p, refs: _any_hit(p, refs, lambda a, b: a == b), mean_total, binary=True, needs_labels=True),
    Metric("exact_match", "share of items equal to the target after SQuAD-style normalisation (0-1)",
           lambda p, refs: _any_hit(p, refs, lambda a, b: normalise_text(a) == normalise_text(b)), mean_total,
           binary=True),
    Metric("numeric", "share of items whose last number equals the target's, commas stripped (0-1)",
           lambda p, refs: _any_hit(p, refs, _numeric_same), mean_total, binary=True),
]


# -- label diagnostics --------------------------------------------------------------------------
INVALID = "<invalid>"
"""Confusion-matrix column for replies that named no declared label (violations, hallucinations)."""


def confusion_matrix(predictions: Sequence[str | None], targets: Sequence[str],
                     labels: Sequence[str]) -> np.ndarray:
    """Rows: target label (declared order); columns: predicted label, then INVALID. The one confusion
    matrix: the stored metric and the report's chart both come from here."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels) + 1), dtype=int)
    for p, t in zip(predictions, targets):
        if t in index:  # targets outside the label set are a data problem, reported by validation
            matrix[index[t], index.get(p, len(labels)) if p is not None else len(labels)] += 1
    return matrix


def macro_f1(matrix: np.ndarray) -> float:
    """Mean F1 over the labels that occur as a target or a prediction (an invalid reply is a miss)."""
    k = matrix.shape[0]
    tp = np.diag(matrix[:, :k]).astype(float)
    fp = matrix[:, :k].sum(0) - tp
    fn = matrix.sum(1) - tp
    present = (matrix.sum(1) > 0) | (matrix[:, :k].sum(0) > 0)
    denom = 2 * tp + fp + fn
    f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)
    return float(f1[present].mean()) if present.any() else 0.0


def label_metrics(predictions: Sequence[str | None], targets: Sequence[str], labels: Sequence[str], *,
                  seed: int = 0, resamples: int = 1000) -> list[MetricValue]:
    """Macro-F1 (with a bootstrap CI) and the confusion matrix."""
    matrix = confusion_matrix(predictions, targets, labels)
    rng = np.random.default_rng(seed)
    n = len(targets)
    samples = []
    for _ in range(resamples if n else 0):
        pick = rng.integers(0, n, n)
        samples.append(macro_f1(confusion_matrix([predictions[i] for i in pick], [targets[i] for i in pick], labels)))
    low, high = (float(np.quantile(samples, 0.025)), float(np.quantile(samples, 0.975))) if samples else (None, None)
    return [MetricValue("macro_f1", macro_f1(matrix), low, high),
            MetricValue("confusion_matrix", None, extra={"rows": list(labels), "columns": [*labels, INVALID],
                                                         "matrix": matrix.tolist()})]
