"""What the data can and cannot tell: which arms are no fair representative of their side (collapsed
to one answer), a paired test over items and seeds for repeated arms, the test size a difference
would need (power from the observed discordance), and how often the recommendation survives
resampling the test items (and seeds, where repeated) — the verdict's stability."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

from .arms import ArmSummary
from .stats import PairedTest, majority_rate, paired_scores

NEVER_PREDICTED_SHARE = 0.10
"""A class holding at least this share of the test items and never predicted marks a collapse; a
77-intent task's 1% classes may be missed by a good arm."""


def collapse_reason(a: ArmSummary) -> str | None:
    """Why an arm is not a fair representative of its side (it answers (nearly) one label), or None.

    Collapsed: accuracy (the mean over seeds, when repeated) at or below the majority-class rate, or a
    frequent class never predicted."""
    if not a.labels or not a.targets:
        return None
    floor = majority_rate(a.targets)
    if a.metric_name == "accuracy" and a.metric <= floor + 1e-9:
        return f"accuracy {a.metric:.3f} at or below the majority-class rate {floor:.3f}"
    counts, predicted = Counter(a.targets), set(a.predictions)
    never = [lab for lab in a.labels if counts.get(lab, 0) >= NEVER_PREDICTED_SHARE * len(a.targets)
             and lab not in predicted]
    if never:
        return f"never predicts {', '.join(never)}"
    # some seeds collapsing (not all) is the arm's instability, shown in its row: it stays in the comparison
    return None


def run_stats(a: ArmSummary, items: Sequence[str]) -> np.ndarray:
    """[runs, items, d] main-metric statistics on `items` (one run for an arm run once): resampling them
    and recomputing the metric keeps a corpus metric itself and every metric on its own scale."""
    position = {i: k for k, i in enumerate(a.item_ids)}
    # arms built by hand may give only [0, 1] scores per run: those stand in as a one-statistic mean
    runs = a.run_stats or [[[c] for c in row] for row in a.run_scores] or [a.item_stats()]
    return np.array([[run[position[i]] for i in items] for run in runs], dtype=float).reshape(len(runs), len(items), -1)


def _run_values(a: ArmSummary, stats: np.ndarray) -> np.ndarray:
    """Each run's metric on the items of `stats` [runs, items, d]."""
    return np.asarray(a.measure.total(stats.sum(axis=1), stats.shape[1]), dtype=float)


def _shared_items(arms: Sequence[ArmSummary]) -> list[str]:
    common = set(arms[0].item_ids).intersection(*(set(a.item_ids) for a in arms[1:]))
    return [i for i in arms[0].item_ids if i in common]


def _resampled_means(arms: Sequence[ArmSummary], tensors: Sequence[np.ndarray], resamples: int,
                     seed: int, chunk: int = 200) -> np.ndarray:
    """[arms, resamples] values: each resample draws the items with replacement (the same items for every
    arm: the comparison stays paired) and each arm's runs with replacement; the metric is recomputed from
    the drawn items' summed statistics per run (in chunks of resamples: chrF has 18 statistics an item)."""
    rng = np.random.default_rng(seed)
    n = tensors[0].shape[1]
    items = rng.integers(0, n, (resamples, n))
    out = np.empty((len(tensors), resamples))
    for k, (a, m) in enumerate(zip(arms, tensors)):
        per_run = np.concatenate([np.asarray(a.measure.total(m[:, items[s:s + chunk]].sum(axis=2), n), dtype=float)
                                  .reshape(m.shape[0], -1) for s in range(0, resamples, chunk)], axis=1)
        runs = rng.integers(0, m.shape[0], (resamples, m.shape[0]))
        out[k] = per_run[runs, np.arange(resamples)[:, None]].mean(axis=1)
    return out


def seeded_test(a: ArmSummary, b: ArmSummary, alpha: float = 0.05, seed: int = 0,
                resamples: int = 4000) -> PairedTest:
    """b - a by a paired bootstrap over items and seeds: each resample draws the shared items and each
    arm's runs with replacement, so a fine-tune's seed-to-seed spread widens the test as it does the CI
    (testing per-item means over seeds alone would treat three seeds as one sure model)."""
    items = _shared_items([a, b])
    ma, mb = run_stats(a, items), run_stats(b, items)
    means = _resampled_means([a, b], [ma, mb], resamples, seed)
    diffs = means[1] - means[0]
    p = float(min(1.0, 2 * min((diffs <= 0).mean(), (diffs >= 0).mean())))
    # the metric's own difference: each arm's mean over its runs of the metric on the shared items
    diff = float(_run_values(b, mb).mean() - _run_values(a, ma).mean())
    runs = ", ".join(f"{x.name} {m.shape[0]} run{'s' if m.shape[0] > 1 else ''}" for x, m in ((a, ma), (b, mb)))
    return PairedTest(a.name, b.name, f"paired bootstrap over items and seeds: {runs}", p, diff, len(items),
                      p < alpha)


def repeated(a: ArmSummary) -> bool:
    return len(a.run_scores) > 1


def needed_items(a: ArmSummary, b: ArmSummary, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Paired test items needed to detect b - a as observed (two-sided alpha, the given power), from
    the observed discordance: Connor (1987)'s McNemar sample size for 0/1 scores, the paired-means
    formula on per-item differences otherwise. None: no difference observed (no size would do)."""
    x, y = paired_scores(a, b)
    if not len(x):
        return None
    d = y - x
    delta = float(d.mean())
    if abs(delta) < 1e-12:
        return None
    za, zb = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    if set(np.unique(d)) <= {-1.0, 0.0, 1.0}:
        psi = float((d != 0).mean())  # share of discordant items
        n = (za * math.sqrt(psi) + zb * math.sqrt(max(psi - delta ** 2, 0.0))) ** 2 / delta ** 2
    else:
        n = ((za + zb) * float(d.std(ddof=1)) / delta) ** 2
    return int(math.ceil(n))


@dataclass
class Stability:
    """How often the recommended arm keeps its place when the test items (and seeds) are resampled."""

    arm: str
    first: float
    """Share of resamples in which it scores at least as well as every other fair arm."""
    rival: str | None
    ahead: float | None
    """Share of resamples in which it scores at least as well as `rival` (the best of the other side)."""
    resamples: int
    seeds: bool
    """True: repeated arms' runs were resampled too."""

    def describe(self) -> str:
        over = "test items and seeds" if self.seeds else "test items"
        text = f"verdict stability ({self.resamples:,} resamples of the {over}): {self.arm} "
        if self.ahead is not None:
            text += f"stays at or above {self.rival} in {self.ahead:.0%} of them and "
        return text + f"ranks first among the fair arms in {self.first:.0%}"


def stability(chosen: ArmSummary, fair: Sequence[ArmSummary], rival: ArmSummary | None,
              resamples: int = 2000, seed: int = 0) -> Stability:
    """The recommended arm's share of resamples in which it stays best (ties count for it)."""
    pool = [chosen] + [a for a in fair if a is not chosen]
    if rival is not None and rival not in pool:
        pool.append(rival)
    items = _shared_items(pool)
    if not items:
        return Stability(chosen.name, float("nan"), rival.name if rival else None, None, 0, False)
    means = _resampled_means(pool, [run_stats(a, items) for a in pool], resamples, seed)
    means = means if chosen.measure.higher_is_better else -means  # "stays best": lowest for a lower metric
    first = float((means[0] >= means.max(axis=0) - 1e-12).mean())
    ahead = None
    if rival is not None:
        ahead = float((means[0] >= means[pool.index(rival)] - 1e-12).mean())
    return Stability(chosen.name, first, rival.name if rival else None, ahead, resamples,
                     any(repeated(a) for a in pool))
