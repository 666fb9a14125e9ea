"""Anytime-valid comparison of two arms on paired items: a betting confidence sequence for the mean
paired difference, and the stopping rule of adaptive evaluation (`adaptive:` in an experiment).

The confidence sequence is the hedged capital process of Waudby-Smith & Ramdas (2023, "Estimating
means of bounded random variables by betting", JRSS-B, Theorem 3) with predictable plug-in
empirical-Bernstein bets, as the authors' own `confseq.betting.betting_cs` computes it (theta 1/2,
bets truncated at 1/2 of the largest fair bet); `confseq` itself needs a C++ build and drags in
pandas, matplotlib and pytest, so the formula is written out here in numpy.

For item i the paired difference d_i = score_a - score_b lies in [-1, 1]; x_i = (d_i + 1) / 2 lies in
[0, 1] with mean m = (delta + 1) / 2. For a candidate m, two gamblers bet on x against m:

    K+_t(m) = prod_i (1 + l+_i (x_i - m)),   K-_t(m) = prod_i (1 - l-_i (x_i - m)),
    l_i = sqrt(2 log(1/(alpha/2)) / (s2_{i-1} i log(1 + i))),  l+_i <= c/m,  l-_i <= c/(1 - m)

(s2: the running variance, shrunk towards 1/4). Under the true m, K+/2 + K-/2 is a nonnegative
martingale starting at 1, so by Ville's inequality the chance that max(K+, K-)/2 ever reaches
1/alpha is at most alpha, however often one looks and whenever one stops. The confidence sequence
is every m that no gambler has ever made rich (the running intersection): valid at every look at
once, which an ordinary p-value re-checked after each chunk is not.

Items are treated as the paired test treats them: draws from the task's population. The test
split in a seeded shuffled order is such a sequence (a shuffle of an iid sample is iid).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Mapping

import numpy as np

GRID = np.round(np.linspace(-1.0, 1.0, 2001), 6)
"""Candidate differences the reported bounds are read on (step 0.001, 0 and +-k/1000 exactly on it)."""
THETA = 0.5
"""Weight of the gambler betting the difference is above the candidate (the other gets 1 - THETA)."""
TRUNCATION = 0.5
"""Bets are at most this share of the largest bet that cannot go bankrupt (confseq's default)."""


def _bets(x: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Predictable plug-in bets (before truncation) for the two gamblers, shape of x: bet i uses
    x_1..x_{i-1} only, which is what makes the capital a martingale."""
    t = np.arange(1, x.shape[-1] + 1)
    mean = (0.5 + np.cumsum(x, axis=-1)) / (t + 1)
    var = (0.25 + np.cumsum((x - mean) ** 2, axis=-1)) / (t + 1)
    var_before = np.concatenate([np.full(x.shape[:-1] + (1,), 0.25), var[..., :-1]], axis=-1)
    scale = t * np.log1p(t) * var_before
    up = np.sqrt(2 * math.log(1 / (alpha * THETA)) / scale)
    down = np.sqrt(2 * math.log(1 / (alpha * (1 - THETA))) / scale)
    return up, down


def peak_wealth(differences: np.ndarray, deltas: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """The largest log wealth each gambler reached so far, against each candidate difference.

    differences: (..., t) paired differences in [-1, 1], in evaluation order.
    deltas: (k,) candidate mean differences.
    Returns (above, below), each (..., k): log max_s K+_s and log max_s K-_s (weighted by THETA).
    A candidate is excluded (for good) once either reaches log(1/alpha); `above` reaching it says the
    true difference is above the candidate, `below` that it is below.
    """
    x = (np.clip(np.asarray(differences, dtype=float), -1.0, 1.0) + 1.0) / 2.0
    m = (np.asarray(deltas, dtype=float)[:, None] + 1.0) / 2.0
    if x.shape[-1] == 0:
        shape = x.shape[:-1] + (len(m),)
        return np.full(shape, math.log(THETA)), np.full(shape, math.log(1 - THETA))
    up, down = _bets(x, alpha)
    with np.errstate(divide="ignore"):
        cap_up, cap_down = TRUNCATION / m, TRUNCATION / (1.0 - m)
    x, up, down = x[..., None, :], up[..., None, :], down[..., None, :]
    # truncation keeps each factor >= 1 - TRUNCATION > 0: log1p never sees -1
    log_up = np.cumsum(np.log1p(np.minimum(up, cap_up) * (x - m)), axis=-1)
    log_down = np.cumsum(np.log1p(-np.minimum(down, cap_down) * (x - m)), axis=-1)
    return (math.log(THETA) + np.maximum(log_up.max(axis=-1), 0.0),
            math.log(1 - THETA) + np.maximum(log_down.max(axis=-1), 0.0))


@dataclass(frozen=True)
class ConfidenceSequence:
    """The running-intersection confidence sequence of a mean paired difference after `n` items."""

    low: float
    """Smallest difference on the grid no gambler has excluded (nan when all are excluded)."""
    high: float
    """Largest such difference."""
    n: int
    """Paired items seen."""
    alpha: float
    """The chance that the sequence ever misses the true difference, at any look, is at most alpha."""

    def describe(self) -> str:
        return f"anytime-valid {1 - self.alpha:.0%} confidence sequence [{self.low:+.3f}, {self.high:+.3f}]"

    def to_dict(self) -> dict:
        return {"low": self.low, "high": self.high, "n": self.n, "alpha": self.alpha}


def confidence_sequence(differences, alpha: float = 0.05, block: int = 256) -> ConfidenceSequence:
    """The confidence sequence for the mean of `differences` (in [-1, 1], evaluation order), read on
    GRID; computed a block of candidates at a time so a long test split stays small in memory."""
    d = np.asarray(differences, dtype=float)
    threshold = math.log(1 / alpha)
    kept = []
    for start in range(0, len(GRID), block):
        above, below = peak_wealth(d, GRID[start:start + block], alpha)
        kept.append((above < threshold) & (below < threshold))
    inside = GRID[np.concatenate(kept)]
    if len(inside) == 0:  # possible only on data no true mean explains; say so rather than invent bounds
        return ConfidenceSequence(float("nan"), float("nan"), len(d), alpha)
    return ConfidenceSequence(float(inside.min()), float(inside.max()), len(d), alpha)


class Settled(str, Enum):
    """What a look found about one arm against the leader (difference = leader - arm)."""

    BELOW = "below"
    """The leader is better: the sequence lies above 0."""
    ABOVE = "above"
    """The arm is better than the leader: the sequence lies below 0 (the leader changes)."""
    EQUIVALENT = "equivalent"
    """The sequence lies inside (-margin, +margin)."""


def settle(differences, alpha: float, margin: float = 0.0) -> Settled | None:
    """Whether the comparison behind `differences` (leader - arm) is settled, and how: 0 excluded
    (the sign says which side), or, with a margin, both -margin and +margin excluded from inside."""
    deltas = np.array([0.0, -margin, margin]) if margin > 0 else np.array([0.0])
    above, below = peak_wealth(np.asarray(differences, dtype=float), deltas, alpha)
    threshold = math.log(1 / alpha)
    if above[0] >= threshold and below[0] < threshold:
        return Settled.BELOW
    if below[0] >= threshold and above[0] < threshold:
        return Settled.ABOVE
    if margin > 0 and above[1] >= threshold and below[2] >= threshold:
        return Settled.EQUIVALENT
    return None


def look(scores: Mapping[str, np.ndarray], alpha: float, margin: float = 0.0) -> tuple[str, dict[str, Settled]]:
    """One look at the arms still being evaluated, all scored on the same items in the same order:
    the leader (highest mean; the first listed on a tie) and every other arm settled against it.

    An arm settled BELOW or EQUIVALENT stops; one found ABOVE the leader keeps going (the two
    swap places as their means move), and so does the leader while any arm is unsettled."""
    names = list(scores)
    leader = max(names, key=lambda n: (float(np.mean(scores[n])) if len(scores[n]) else 0.0, -names.index(n)))
    found = {}
    for name in names:
        if name != leader:
            verdict = settle(scores[leader] - scores[name], alpha, margin)
            if verdict is not None:
                found[name] = verdict
    return leader, found
