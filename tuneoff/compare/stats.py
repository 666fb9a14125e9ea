"""Statistics over arm summaries: the paired test, label bias, the learning-curve crossover, the
confusion matrix. scipy is imported here only, so reading configs never pays for it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

from .arms import ArmSummary
from .sequential import ConfidenceSequence


@dataclass
class PairedTest:
    a: str
    b: str
    test: str
    p_value: float
    difference: float
    """metric(b) - metric(a) on the shared items."""
    n: int
    significant: bool
    sequence: ConfidenceSequence | None = None
    """Adaptive evaluation: the anytime-valid confidence sequence of b - a over the same items in the
    order they were scored (the test that stopped the arms), shown beside this fixed-n test."""

    def describe(self) -> str:
        verdict = "significant" if self.significant else "not significant"
        text = (f"{self.b} - {self.a} = {self.difference:+.3f} on {self.n} paired items "
                f"({self.test}, p={self.p_value:.3g}: {verdict} at 0.05)")
        return text + (f"; {self.sequence.describe()}" if self.sequence is not None else "")


def paired_scores(a: ArmSummary, b: ArmSummary) -> tuple[np.ndarray, np.ndarray]:
    """(a's, b's) per-item scores on the items both scored, in b's item order."""
    shared = {i: k for k, i in enumerate(a.item_ids)}
    pairs = [(a.correct[shared[i]], b.correct[k]) for k, i in enumerate(b.item_ids) if i in shared]
    return (np.array([p[0] for p in pairs], dtype=float), np.array([p[1] for p in pairs], dtype=float))


def paired_test(a: ArmSummary, b: ArmSummary, alpha: float = 0.05, seed: int = 0,
                resamples: int = 2000) -> PairedTest:
    """McNemar's exact test when scores are 0/1, else a paired bootstrap of the mean difference."""
    x, y = paired_scores(a, b)
    diff = float(y.mean() - x.mean()) if len(x) else 0.0
    if len(x) and set(np.unique(np.concatenate([x, y]))) <= {0.0, 1.0}:
        only_a = int(((x == 1) & (y == 0)).sum())
        only_b = int(((x == 0) & (y == 1)).sum())
        n = only_a + only_b
        p = 1.0 if n == 0 else float(stats.binomtest(only_b, n, 0.5).pvalue)
        test = f"McNemar exact, {only_a} vs {only_b} discordant"
    else:
        rng = np.random.default_rng(seed)
        d = y - x
        boots = np.array([d[rng.integers(0, len(d), len(d))].mean() for _ in range(resamples)]) if len(d) else np.zeros(1)
        p = float(min(1.0, 2 * min((boots <= 0).mean(), (boots >= 0).mean())))
        test = "paired bootstrap"
    return PairedTest(a.name, b.name, test, p, diff, len(x), p < alpha)


def label_bias(predictions: Sequence[str | None], targets: Sequence[str], labels: Sequence[str]) -> dict:
    """How far the predicted label distribution is from the true one (total variation distance,
    0 = same, 1 = disjoint) and the worst per-class recall."""
    n = len(targets)
    pred = Counter(p for p in predictions if p is not None)
    true = Counter(targets)
    tv = 0.5 * sum(abs(pred.get(lab, 0) / n - true.get(lab, 0) / n) for lab in set(labels) | set(pred))
    recalls = {}
    for lab in labels:
        idx = [k for k, t in enumerate(targets) if t == lab]
        if idx:
            recalls[lab] = sum(predictions[k] == lab for k in idx) / len(idx)
    worst = min(recalls.items(), key=lambda kv: kv[1]) if recalls else (None, float("nan"))
    return {"tv_distance": tv, "worst_class": worst[0], "worst_recall": worst[1]}


def crossover(curve: Sequence[tuple[int, float]], reference: float) -> int | None:
    """Smallest n on a fine-tuning learning curve whose metric beats `reference`, else None."""
    for n, value in sorted(curve):
        if value > reference:
            return n
    return None


def best(arms: Sequence[ArmSummary], kinds: Sequence[str]) -> ArmSummary | None:
    pool = [a for a in arms if a.kind in kinds]
    return max(pool, key=lambda a: a.metric) if pool else None


def confusion_matrix(a: ArmSummary) -> dict:
    """Rows: true label; columns: predicted label (+ a last column for unparseable/other)."""
    labels = list(a.labels or [])
    index = {lab: k for k, lab in enumerate(labels)}
    matrix = [[0] * (len(labels) + 1) for _ in labels]
    for t, p in zip(a.targets, a.predictions):
        if t in index:
            matrix[index[t]][index.get(p, len(labels))] += 1
    return {"labels": labels, "matrix": matrix}


def repeated_ci(scores: np.ndarray, resamples: int = 2000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile CI of the mean of a runs x items score matrix, resampling runs and items together
    (each resample draws runs with replacement and items with replacement, the same items for every
    drawn run): the interval widens with run-to-run variance as well as with item variance."""
    runs, items = scores.shape
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for b in range(resamples):
        r, i = rng.integers(0, runs, runs), rng.integers(0, items, items)
        means[b] = scores[np.ix_(r, i)].mean()
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def majority_rate(targets: Sequence[str]) -> float:
    """Accuracy of always answering the most frequent label: a run at or below it learned nothing."""
    counts = Counter(targets)
    return max(counts.values()) / len(targets) if targets else 0.0
