"""The verdict: prompt engineering, fine-tuning, or both combined — derived from measured figures
and the user's constraints. Every reason quotes a measured number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ..config.prices import Constraints, PriceTable
from ..errors import TuneoffError
from .arms import ArmSummary
from .costs import monthly
from .pairs import PairStats
from .stats import PairedTest, best

VERDICTS = {"prompt": "prompt engineering", "finetune": "fine-tuning", "combined": "both combined"}


@dataclass
class Verdict:
    choice: str
    """`prompt engineering`, `fine-tuning` or `both combined`."""
    arm: str
    reasons: list[str] = field(default_factory=list)
    ruled_out: dict[str, str] = field(default_factory=dict)
    test: PairedTest | None = None


def _rule_out(a: ArmSummary, c: Constraints, prices: PriceTable) -> str | None:
    if c.quality_target is not None and a.metric < c.quality_target:
        return f"{a.metric_name} {a.metric:.3f} < target {c.quality_target:.3f}"
    if c.latency_p95_s is not None and a.latency_p95 > c.latency_p95_s:
        return f"p95 latency {a.latency_p95:.3f} s ({a.latency_source}) > target {c.latency_p95_s:.3f} s"
    if c.monthly_budget is not None:
        cost = monthly(a.cost(), prices, c.monthly_requests)
        if cost > c.monthly_budget:
            return f"${cost:.2f}/month at {c.monthly_requests:,.0f} requests > budget ${c.monthly_budget:.2f}"
    if c.examples_available is not None and a.examples_needed > c.examples_available:
        return f"needs {a.examples_needed} labelled examples, {c.examples_available} available"
    return None


def recommend(arms: Sequence[ArmSummary], constraints: Constraints, prices: PriceTable,
              pairs: PairStats | None = None) -> Verdict:
    """The cheapest feasible arm whose quality is not significantly below the best feasible arm's (the
    best itself when every cheaper arm is significantly worse).

    pairs: the comparison's memoised paired tests and paybacks (a fresh one when called alone)."""
    pairs = pairs or PairStats(prices)
    if not arms:
        raise TuneoffError("no arms to compare", field="arms")
    ruled = {a.name: why for a in arms if (why := _rule_out(a, constraints, prices))}
    feasible = [a for a in arms if a.name not in ruled]
    if not feasible:
        top = max(arms, key=lambda a: a.metric)
        return Verdict(VERDICTS[top.kind], top.name, [
            f"no arm meets every constraint; the closest is {top.name} with {top.metric_name} {top.metric:.3f} "
            f"[{top.ci_low:.3f}, {top.ci_high:.3f}] ({ruled[top.name]})"], ruled)
    top = max(feasible, key=lambda a: a.metric)
    cost_of = {a.name: monthly(a.cost(), prices, constraints.monthly_requests) for a in feasible}
    by_cost = sorted(feasible, key=lambda a: (cost_of[a.name], -a.metric))
    # the cheapest arm the data cannot tell apart from the best one (a gap that is not significant)
    chosen = next(a for a in by_cost if a is top or not pairs.test(a, top).significant)
    reasons, test = [], None
    if chosen is not top:
        test = pairs.test(chosen, top)
        reasons.append(f"{chosen.name} is the cheapest arm whose quality is not significantly below the best "
                       f"({top.name}): ${cost_of[chosen.name]:.2f}/month at {constraints.monthly_requests:,.0f} "
                       f"requests vs ${cost_of[top.name]:.2f}; {test.describe()}")
        if test.difference >= 0.05:  # a large gap that is not significant: the test split is what is short
            reasons.append(f"{top.name} scores {test.difference:+.3f} more, but {test.n} paired test items cannot "
                           f"tell that from chance (p={test.p_value:.2g}): a larger test split may change this verdict")
    elif by_cost[0] is not top:
        test = pairs.test(by_cost[0], top)
        reasons.append(f"{top.name} is significantly better than every cheaper feasible arm; the cheapest: "
                       f"{test.describe()}")
    reasons.insert(0, f"{chosen.name}: {chosen.metric_name} {chosen.metric:.3f} [{chosen.ci_low:.3f}, "
                      f"{chosen.ci_high:.3f}], p95 latency {chosen.latency_p95:.3f} s ({chosen.latency_source}), "
                      f"${cost_of[chosen.name]:.2f}/month at {constraints.monthly_requests:,.0f} requests")
    reasons += _cost_reasons(feasible, constraints, pairs)
    reasons += _budget_reasons(arms)
    reasons += _adaptive_reasons(arms)
    if ruled:
        reasons.append("ruled out: " + "; ".join(f"{k} ({v})" for k, v in ruled.items()))
    return Verdict(VERDICTS[chosen.kind], chosen.name, reasons, ruled, test)


def _cost_reasons(feasible: Sequence[ArmSummary], c: Constraints, pairs: PairStats) -> list[str]:
    prompt, tuned = best(feasible, ["prompt"]), best(feasible, ["finetune", "combined"])
    if not prompt or not tuned:
        return []
    be = pairs.payback(prompt, tuned)
    if be.volume is None:
        return [f"{tuned.name} is never cheaper than {prompt.name} per request ({be.reason})"]
    side = "above" if c.monthly_requests >= be.volume else "below"
    return [f"break-even of {tuned.name} vs {prompt.name}: {be.volume:,.0f} requests/month "
            f"(you expect {c.monthly_requests:,.0f}: {side} it)"]


def _budget_reasons(arms: Sequence[ArmSummary]) -> list[str]:
    """Whether the two sides had comparable tuning budgets on dev (a fair comparison needs them)."""
    prompt, tuned = best(arms, ["prompt"]), best(arms, ["finetune", "combined"])
    if not prompt or not tuned:
        return []
    p, t = prompt.tuning, tuned.tuning
    if not p and not t:
        return [f"tuning budgets: neither {prompt.name} nor {tuned.name} was tuned on dev (both run as written; "
                "add `tuning:` and `tune: true` for a fair fight)"]
    if not p or not t:
        side, other = (tuned, prompt) if t else (prompt, tuned)
        return [f"tuning budgets NOT comparable: {side.name} was tuned on dev ({side.tuning['trials']} candidates, "
                f"{side.tuning['minutes']:.1f} min), {other.name} was not"]
    ratio = max(p["minutes"], t["minutes"]) / max(min(p["minutes"], t["minutes"]), 1e-9)
    verdict = "comparable" if p["trials"] > 1 and t["trials"] > 1 else "NOT comparable (one side tried one candidate)"
    return [f"tuning budgets {verdict}: {prompt.name} {p['trials']} candidates / {p['minutes']:.1f} min, "
            f"{tuned.name} {t['trials']} candidates / {t['minutes']:.1f} min on the same dev split"
            + (f" ({ratio:.0f}x more time on one side)" if ratio >= 5 else "")]


def _adaptive_reasons(arms: Sequence[ArmSummary]) -> list[str]:
    """How many test items an adaptive evaluation scored, and why each arm stopped where it did."""
    stops = [a.adaptive for a in arms if a.adaptive is not None]
    if not stops:
        return []
    used, full = sum(s.items for s in stops), sum(s.n_test for s in stops)
    return [f"adaptive test evaluation (anytime-valid confidence sequences, alpha {stops[0].alpha:g} per comparison): "
            f"{used} of {full} arm-items scored ({1 - used / full:.0%} fewer); "
            + "; ".join(f"{s.arm} {s.items} ({s.why})" for s in stops)]
