"""Metrics over stored predictions: the main metric with a bootstrap CI, label diagnostics, cost.

A main metric is two functions: per-item statistics (a small vector) and a total over summed
statistics. Accuracy-like metrics sum 0/1 hits; chrF sums character n-gram counts, so the corpus
score (and every bootstrap resample of it) is computed from counts, exactly as sacreBLEU does.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .errors import TuneoffError, did_you_mean


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


@dataclass(frozen=True)
class Metric:
    """A main metric: per-item statistics and the total computed from their sums."""

    name: str
    """Registry name (what a task's `metric` says)."""
    description: str
    """One line for help texts and the report."""
    stats: Callable[[str | None, str], np.ndarray]
    """(prediction, target) -> statistics vector; a None prediction (unreadable reply) scores as wrong."""
    total: Callable[[np.ndarray, int], np.ndarray]
    """(summed statistics [..., d], item count) -> metric value(s)."""
    scale: float = 1.0
    """The value of a perfect score (100 for chrF), so an item's own score can be stored in [0, 1]."""

    def item(self, prediction: str | None, target: str) -> float:
        """One item's own score in [0, 1] (stored as the prediction's `correct`)."""
        return float(self.total(self.stats(prediction, target)[None, :], 1)[0]) / self.scale


# -- what counts as the answer (in a reference or a reply) -----------------------------------
# the last match wins: a reasoning chain may say "the answer is" on the way to its final one
ANSWER_PATTERNS = [
    re.compile(r"####\s*([^\n]+)"),
    re.compile(r"\b(?:the\s+)?(?:final\s+)?answer\s+is\s*:?\s*([^\n]+)", re.IGNORECASE),
    re.compile(r"\banswer\s*:\s*([^\n]+)", re.IGNORECASE),
]
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def clean_answer(answer: str) -> str:
    # markdown bold, quotes and a closing full stop are decoration, not the answer
    answer = answer.strip().replace("**", "")
    answer = answer.strip(" \t\"'`")
    return answer[:-1].rstrip() if answer.endswith(".") else answer


def answer_after_cue(text: str) -> str | None:
    """The text after the last "The answer is" / "Answer:" / "####" cue, or None when there is none."""
    best: tuple[int, str] | None = None
    for pattern in ANSWER_PATTERNS:
        for match in pattern.finditer(text):
            if best is None or match.start() > best[0]:
                best = (match.start(), match.group(1))
    return clean_answer(best[1]) if best else None


def last_number(text: str) -> str | None:
    """The last number in `text`, thousands separators removed ("1,234" -> "1234")."""
    found = NUMBER.findall(text)
    return found[-1].replace(",", "").rstrip(".") if found else None


# -- per-item comparisons -----------------------------------------------------------------------
def normalise_text(text: str) -> str:
    """SQuAD-style: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def as_number(text: str | None) -> float | None:
    if text is None:
        return None
    # a GSM8K target is a worked solution ending in "#### N": the number after the cue is the answer
    found = last_number(answer_after_cue(text) or text)
    try:
        return float(found) if found is not None else None
    except ValueError:
        return None


def _hit(ok: bool) -> np.ndarray:
    return np.array([1.0 if ok else 0.0])


def _mean(sums: np.ndarray, n: int) -> np.ndarray:
    return sums[..., 0] / max(n, 1)


def _numeric_hit(prediction: str | None, target: str) -> np.ndarray:
    p, t = as_number(prediction), as_number(target)
    return _hit(p is not None and t is not None and abs(p - t) < 1e-6 * max(1.0, abs(t)))


# -- chrF ---------------------------------------------------------------------------------------
CHRF_ORDER = 6
CHRF_BETA = 2.0


def chrf_stats(hypothesis: str | None, reference: str) -> np.ndarray:
    """Per order n = 1..6: [hypothesis n-grams, reference n-grams, matches], whitespace removed (sacreBLEU)."""
    hyp, ref = "".join((hypothesis or "").split()), "".join(reference.split())
    out = np.zeros(3 * CHRF_ORDER)
    for n in range(1, CHRF_ORDER + 1):
        h = Counter(hyp[i:i + n] for i in range(len(hyp) - n + 1))
        r = Counter(ref[i:i + n] for i in range(len(ref) - n + 1))
        # as sacreBLEU: an order the reference is too short for counts no hypothesis n-grams either,
        # so a short reference ("merci") does not lower the corpus precision of its orders 6+
        out[3 * n - 3:3 * n] = (sum(h.values()) if r else 0, sum(r.values()), sum((h & r).values()))
    return out


def chrf_total(sums: np.ndarray, n: int = 0) -> np.ndarray:
    """chrF (0-100) from summed statistics, as sacreBLEU 2: precision and recall averaged over the orders
    present on both sides, then combined as F-beta (recall weighted beta times)."""
    sums = np.asarray(sums, dtype=float).reshape(*np.shape(sums)[:-1], CHRF_ORDER, 3)
    hyp, ref, match = sums[..., 0], sums[..., 1], sums[..., 2]
    both = (hyp > 0) & (ref > 0)
    effective = np.maximum(both.sum(-1), 1)
    prec = np.where(both, match / np.maximum(hyp, 1), 0.0).sum(-1) / effective
    rec = np.where(both, match / np.maximum(ref, 1), 0.0).sum(-1) / effective
    beta2 = CHRF_BETA ** 2
    denom = beta2 * prec + rec
    return np.where(denom > 0, 100 * (1 + beta2) * prec * rec / np.where(denom > 0, denom, 1), 0.0)


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF of aligned hypotheses and references."""
    return float(chrf_total(sum(chrf_stats(h, r) for h, r in zip(hypotheses, references))))


METRICS: dict[str, Metric] = {m.name: m for m in [
    Metric("accuracy", "share of items whose prediction equals the target label",
           lambda p, t: _hit(p is not None and p == t), _mean),
    Metric("exact_match", "share of items equal to the target after SQuAD-style normalisation",
           lambda p, t: _hit(p is not None and normalise_text(p) == normalise_text(t)), _mean),
    Metric("numeric", "share of items whose last number equals the target's (commas stripped)",
           _numeric_hit, _mean),
    Metric("chrf", "corpus chrF (character 6-grams, beta 2), 0-100", chrf_stats, chrf_total, scale=100.0),
]}
"""Main metrics by name: the one source of truth (task specs name one of these)."""


def get_metric(name: str, field: str = "metric") -> Metric:
    if name not in METRICS:
        raise TuneoffError(f"unknown metric '{name}'", field=field, hint=did_you_mean(name, list(METRICS)))
    return METRICS[name]


# -- bootstrap ----------------------------------------------------------------------------------
def bootstrap_ci(stats: np.ndarray, total: Callable[[np.ndarray, int], np.ndarray], *, resamples: int = 1000,
                 seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile CI of `total` over item resamples drawn with replacement (seeded: reports repeat)."""
    stats = np.asarray(stats, dtype=float)
    n = len(stats)
    if n == 0:
        return float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    values = total(stats[idx].sum(axis=1), n)
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


# -- label diagnostics --------------------------------------------------------------------------
INVALID = "<invalid>"
"""Confusion-matrix column for replies that named no declared label (violations, hallucinations)."""


def confusion_matrix(predictions: Sequence[str | None], targets: Sequence[str],
                     labels: Sequence[str]) -> np.ndarray:
    """Rows: target label (declared order); columns: predicted label, then INVALID."""
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


def main_metric(name: str, predictions: Sequence[str | None], targets: Sequence[str], *, seed: int = 0,
                resamples: int = 1000) -> MetricValue:
    """The task's main metric with its bootstrap 95% CI."""
    metric = get_metric(name)
    stats = np.array([metric.stats(p, t) for p, t in zip(predictions, targets)]).reshape(len(targets), -1)
    value = float(metric.total(stats.sum(0), len(targets))) if len(targets) else None
    low, high = bootstrap_ci(stats, metric.total, resamples=resamples, seed=seed) if len(targets) else (None, None)
    return MetricValue(name, value, low, high, extra={"n": len(targets), "resamples": resamples, "seed": seed})


# -- cost and format ----------------------------------------------------------------------------
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
