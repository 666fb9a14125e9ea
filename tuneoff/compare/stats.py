"""Statistics over arm summaries: the paired test, label bias, the learning-curve crossover, the
confusion matrix. scipy is imported here only, so reading configs never pays for it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

from ..metrics import Metric, paired_bootstrap, repeated_ci  # noqa: F401 (repeated_ci: one home, in metrics)
from ..metrics import confusion_matrix as metrics_confusion
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


def _shared(a: ArmSummary, b: ArmSummary) -> list[tuple[int, int]]:
    """(a's index, b's index) of the items both arms scored, in b's item order."""
    position = {i: k for k, i in enumerate(a.item_ids)}
    return [(position[i], k) for k, i in enumerate(b.item_ids) if i in position]


def paired_scores(a: ArmSummary, b: ArmSummary) -> tuple[np.ndarray, np.ndarray]:
    """(a's, b's) per-item scores in [0, 1] on the items both scored, in b's item order."""
    pairs = _shared(a, b)
    return (np.array([a.correct[i] for i, _ in pairs], dtype=float),
            np.array([b.correct[k] for _, k in pairs], dtype=float))


def paired_stats(a: ArmSummary, b: ArmSummary) -> tuple[np.ndarray, np.ndarray]:
    """(a's, b's) [items, d] main-metric statistics on the items both scored, in b's item order."""
    pairs = _shared(a, b)
    sa, sb = a.item_stats(), b.item_stats()
    return (np.array([sa[i] for i, _ in pairs], dtype=float).reshape(len(pairs), -1),
            np.array([sb[k] for _, k in pairs], dtype=float).reshape(len(pairs), -1))


def paired_test(a: ArmSummary, b: ArmSummary, alpha: float = 0.05, seed: int = 0,
                resamples: int = 2000) -> PairedTest:
    """b against a on the main metric's own statistic: McNemar's exact test when the metric's item
    scores are 0/1, else paired bootstrap resampling of the metric recomputed from summed per-item
    statistics (Koehn 2004, as sacreBLEU's paired_bs), so a corpus metric is tested as itself.
    `difference` is metric(b) - metric(a) on the metric's scale; which sign is better, the metric says."""
    metric = b.measure
    x, y = paired_stats(a, b)
    n = len(x)
    if n and metric.binary and set(np.unique(np.concatenate([x, y]))) <= {0.0, 1.0}:
        x, y = x[:, 0], y[:, 0]
        only_a = int(((x == 1) & (y == 0)).sum())
        only_b = int(((x == 0) & (y == 1)).sum())
        p = 1.0 if only_a + only_b == 0 else float(stats.binomtest(only_b, only_a + only_b, 0.5).pvalue)
        return PairedTest(a.name, b.name, f"McNemar exact, {only_a} vs {only_b} discordant", p,
                          float(y.mean() - x.mean()), n, p < alpha)
    diff, p = paired_bootstrap(x, y, metric.total, resamples=resamples, seed=seed) if n else (0.0, 1.0)
    return PairedTest(a.name, b.name, f"paired bootstrap of {metric.name}", p, diff, n, p < alpha)


def metric_test(name: str, a: ArmSummary, b: ArmSummary, alpha: float = 0.05, seed: int = 0,
                resamples: int = 1000) -> PairedTest | None:
    """The paired bootstrap of a secondary metric between two arms (None when either lacks it)."""
    sa, sb = a.secondary.get(name), b.secondary.get(name)
    if sa is None or sb is None or not sa.stats or not sb.stats:
        return None
    pairs = _shared(a, b)
    x = np.array([sa.stats[i] for i, _ in pairs], dtype=float).reshape(len(pairs), -1)
    y = np.array([sb.stats[k] for _, k in pairs], dtype=float).reshape(len(pairs), -1)
    diff, p = paired_bootstrap(x, y, sa.measure.total, resamples=resamples, seed=seed) if pairs else (0.0, 1.0)
    return PairedTest(a.name, b.name, f"paired bootstrap of {name}", p, diff, len(pairs), p < alpha)


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


def crossover(curve: Sequence[tuple[int, float]], reference: float, metric: Metric | None = None) -> int | None:
    """Smallest n on a fine-tuning learning curve whose metric beats `reference` (in the metric's
    direction; higher by default), else None."""
    for n, value in sorted(curve):
        if (metric.better(value, reference) if metric else value > reference):
            return n
    return None


def best(arms: Sequence[ArmSummary], kinds: Sequence[str]) -> ArmSummary | None:
    """The best arm of the given kinds by its main metric, in the metric's direction."""
    pool = [a for a in arms if a.kind in kinds]
    return max(pool, key=lambda a: a.measure.key(a.metric)) if pool else None


def confusion_matrix(a: ArmSummary) -> dict:
    """Rows: true label; columns: predicted label (+ a last column for unparseable/other): the stored
    metric's matrix (`metrics.confusion_matrix`), for an arm's chart."""
    labels = list(a.labels or [])
    return {"labels": labels, "matrix": metrics_confusion(a.predictions, a.targets, labels).tolist()}


def majority_rate(targets: Sequence[str]) -> float:
    """Accuracy of always answering the most frequent label: a run at or below it learned nothing."""
    counts = Counter(targets)
    return max(counts.values()) / len(targets) if targets else 0.0
