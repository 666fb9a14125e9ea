"""The anytime-valid comparison behind adaptive evaluation (`tuneoff.compare.sequential`): the
confidence sequence against a literal loop of the published formula and the authors' library, and
the stopping rule's error rates in Monte-Carlo simulations of paired arms (numpy, ~2 s in all)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from tuneoff.compare.sequential import GRID, Settled, confidence_sequence, look, peak_wealth, settle

ALPHA, CHUNK, MIN_ITEMS = 0.05, 16, 32
SIMS = 2000
MC_MARGIN = 3 * math.sqrt(ALPHA * (1 - ALPHA) / SIMS)
"""Three Monte-Carlo standard errors of a rate near alpha over SIMS simulations (~0.015)."""


def paired(rng, sims: int, n: int, p_a: float, p_b: float, agree: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """0/1 scores of two arms on the same items, correlated as arms on one model are: b repeats a's
    outcome with probability `agree`, else draws its own (tuned so b's accuracy is p_b)."""
    a = rng.random((sims, n)) < p_a
    own = (p_b - agree * p_a) / (1 - agree)
    b = np.where(rng.random((sims, n)) < agree, a, rng.random((sims, n)) < own)
    return a.astype(float), b.astype(float)


def looks(n: int) -> list[int]:
    return sorted({min(t, n) for t in range(CHUNK, n + CHUNK, CHUNK) if t >= MIN_ITEMS or t >= n})


def stopping(d: np.ndarray, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(the look each simulation settled at, n if never; +1 settled above 0, -1 below, 0 not)."""
    sims, n = d.shape
    stop, sign = np.full(sims, n), np.zeros(sims)
    threshold = math.log(1 / ALPHA)
    for t in looks(n):
        above, below = peak_wealth(d[:, :t], np.array([0.0]), ALPHA)
        new = (sign == 0) & ((above[:, 0] >= threshold) | (below[:, 0] >= threshold))
        sign[new] = np.where(above[new, 0] >= threshold, 1, -1)
        stop[new] = t
    return stop, sign


def reference_bounds(d: np.ndarray, alpha: float) -> tuple[float, float]:
    """The hedged betting confidence sequence written as the paper states it, item by item."""
    x = (d + 1) / 2
    inside = []
    for delta in GRID:
        m = (delta + 1) / 2
        up = down = 1.0
        mean, sq, excluded = 0.5, 0.25, False
        for i, xi in enumerate(x, start=1):
            var = sq / i  # sigma^2_{i-1}: (1/4 + sum_{j<i} (x_j - mean_j)^2) / i
            lam_up = min(math.sqrt(2 * math.log(2 / alpha) / (var * i * math.log(1 + i))), 0.5 / m if m else math.inf)
            lam_down = min(math.sqrt(2 * math.log(2 / alpha) / (var * i * math.log(1 + i))),
                           0.5 / (1 - m) if m < 1 else math.inf)
            up *= 1 + lam_up * (xi - m)
            down *= 1 - lam_down * (xi - m)
            excluded = excluded or max(up, down) / 2 >= 1 / alpha
            mean = (0.5 + x[:i].sum()) / (i + 1)
            sq += (xi - mean) ** 2
        if not excluded:
            inside.append(delta)
    return min(inside), max(inside)


def test_the_confidence_sequence_is_the_published_one():
    rng = np.random.default_rng(7)
    a, b = paired(rng, 1, 40, 0.8, 0.6)
    d = (a - b)[0]
    cs = confidence_sequence(d, ALPHA)
    assert (cs.low, cs.high) == pytest.approx(reference_bounds(d, ALPHA), abs=1e-9)
    assert cs.low <= d.mean() <= cs.high and cs.n == 40


def test_the_confidence_sequence_matches_the_authors_library():
    """confseq 0.0.11 `betting_cs(x, alpha=0.05, breaks=2000, running_intersection=True)` on this data
    gave [-0.065, +0.184] on the difference scale: ours, on the same grid, without confseq's one-step
    outward widening, is [-0.064, +0.183]."""
    rng = np.random.default_rng(3)
    a = rng.random(60) < 0.75
    b = np.where(rng.random(60) < 0.8, a, rng.random(60) < 0.5)
    cs = confidence_sequence(a.astype(float) - b.astype(float), 0.05)
    assert (cs.low, cs.high) == pytest.approx((-0.064, 0.183), abs=1e-9)


def test_equal_arms_are_wrongly_settled_at_most_alpha_of_the_time():
    """Two arms of equal accuracy, looked at after every chunk up to 400 items: the share of
    simulations in which the sequence ever excludes 0 stays within alpha (Ville's inequality), and so
    does the share in which the paired test at the stop says "significant". Peeking at the paired
    test's p-value after every chunk instead (what adaptive evaluation must not do) is far above it."""
    rng = np.random.default_rng(0)
    a, b = paired(rng, SIMS, 400, 0.7, 0.7)
    d = a - b
    stop, sign = stopping(d)
    wrongly_settled = float(np.mean(sign != 0))
    assert wrongly_settled <= ALPHA + MC_MARGIN
    only_a, only_b = np.cumsum(d == 1, axis=1), np.cumsum(d == -1, axis=1)

    def mcnemar(t):  # exact two-sided McNemar p at each simulation's own t (vectorised binomtest)
        oa, ob = only_a[np.arange(SIMS), t - 1], only_b[np.arange(SIMS), t - 1]
        return np.minimum(1.0, 2 * stats.binom.cdf(np.minimum(oa, ob), oa + ob, 0.5))

    assert float(np.mean(mcnemar(stop) < ALPHA)) <= ALPHA + MC_MARGIN
    peeked = np.zeros(SIMS, dtype=bool)
    for t in looks(400):
        peeked |= mcnemar(np.full(SIMS, t)) < ALPHA
    assert float(np.mean(peeked)) > ALPHA + MC_MARGIN  # the guard is real: peeking inflates the error


def test_a_real_difference_is_settled_with_its_sign_and_early():
    rng = np.random.default_rng(1)
    a, b = paired(rng, SIMS, 400, 0.8, 0.65)
    stop, sign = stopping(a - b)
    assert np.mean(sign == 1) >= 0.95  # a is better, and found so
    assert np.mean(sign == -1) <= ALPHA  # the wrong sign is an error like any other
    assert np.mean(stop < 400) >= 0.9 and np.median(stop) <= 160


def test_equivalence_needs_the_whole_sequence_inside_the_margin():
    rng = np.random.default_rng(2)
    a, b = paired(rng, 200, 600, 0.8, 0.8, agree=0.95)  # 2% discordant items: equal arms, easy to tell equal
    found = [settle(d, ALPHA, margin=0.05) for d in a - b]
    assert found.count(Settled.EQUIVALENT) >= 0.9 * 200
    a, b = paired(rng, 200, 600, 0.85, 0.7, agree=0.9)  # 15 points apart: never equivalent within 5
    found = [settle(d, ALPHA, margin=0.05) for d in a - b]
    assert found.count(Settled.EQUIVALENT) <= ALPHA * 200 and found.count(Settled.BELOW) >= 0.9 * 200


def test_a_look_settles_arms_against_the_leader_only():
    n = 200
    best = np.ones(n)
    worse = np.where(np.arange(n) % 2 == 0, 1.0, 0.0)  # 50 points below the leader
    close = np.where(np.arange(n) % 40 == 0, 0.0, 1.0)  # 2.5 points below: not settled on 200 items
    leader, settled = look({"worse": worse, "best": best, "close": close}, ALPHA)
    assert leader == "best" and settled == {"worse": Settled.BELOW}
    leader, settled = look({"a": worse, "b": worse.copy()}, ALPHA)
    assert leader == "a" and settled == {}  # a tie: the first listed leads, nothing is settled


def test_an_arm_that_led_early_is_found_above_the_current_leader():
    """The sequence is a running intersection: an arm far ahead over the first items stays settled
    ABOVE the arm that now leads on the mean, and a look reports it so (the scheduler keeps it)."""
    x = np.concatenate([np.zeros(60), np.ones(70)])  # leads on the mean after 130 items
    y = np.concatenate([np.ones(60), np.zeros(70)])
    assert x.mean() > y.mean()
    assert settle(x - y, ALPHA) is Settled.ABOVE
    assert look({"x": x, "y": y}, ALPHA) == ("x", {"y": Settled.ABOVE})


def test_no_items_no_evidence():
    above, below = peak_wealth(np.zeros((3, 0)), np.array([0.0, 0.5]), ALPHA)
    assert above.shape == (3, 2) and (above < math.log(1 / ALPHA)).all() and (below < math.log(1 / ALPHA)).all()
