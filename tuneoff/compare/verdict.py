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
from .evidence import collapse_reason, needed_items, stability
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
    """The recommended arm against the best fair arm of the other side (else against the best arm)."""
    unfair: dict[str, str] = field(default_factory=dict)
    """{arm: why it is no fair representative of its side}: collapsed arms, marked in the table."""


def _better(a: ArmSummary) -> str:
    """Which way is better for the arm's metric, for reasons that quote a signed difference."""
    return f"{a.metric_name}: {'higher' if a.measure.higher_is_better else 'lower'} is better"


def _rule_out(a: ArmSummary, c: Constraints, prices: PriceTable) -> str | None:
    if c.quality_target is not None and a.measure.better(c.quality_target, a.metric):
        side = "<" if a.measure.higher_is_better else ">"
        return f"{a.metric_name} {a.metric:.3f} {side} target {c.quality_target:.3f}"
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
    """The cheapest feasible fair arm whose quality is not significantly below the best fair arm's (the
    best itself when every cheaper arm is significantly worse); a collapsed arm (one answer for most
    items) is no fair representative of its side and is neither recommended nor compared against.

    The first reason compares the recommended arm with the best fair arm of the OTHER side; when that
    test cannot separate them it says so first, recommends by cost and names the test size needed.
    pairs: the comparison's memoised paired tests and paybacks (a fresh one when called alone)."""
    pairs = pairs or PairStats(prices)
    if not arms:
        raise TuneoffError("no arms to compare", field="arms")
    ruled = {a.name: why for a in arms if (why := _rule_out(a, constraints, prices))}
    feasible = [a for a in arms if a.name not in ruled]
    if not feasible:
        top = max(arms, key=lambda a: a.measure.key(a.metric))  # the metric says which way is better
        return Verdict(VERDICTS[top.kind], top.name, [
            f"no arm meets every constraint; the closest is {top.name} with {top.metric_name} {top.metric:.3f} "
            f"[{top.ci_low:.3f}, {top.ci_high:.3f}] ({ruled[top.name]})"], ruled)
    unfair = {a.name: why for a in arms if (why := collapse_reason(a))}
    fair = [a for a in feasible if a.name not in unfair] or feasible  # all collapsed: compare what there is
    top = max(fair, key=lambda a: a.measure.key(a.metric))  # the metric says which way is better
    cost_of = {a.name: monthly(a.cost(), prices, constraints.monthly_requests) for a in arms}
    by_cost = sorted(fair, key=lambda a: (cost_of[a.name], -a.measure.key(a.metric)))
    # the cheapest arm the data cannot tell apart from the best one (a gap that is not significant)
    chosen = next(a for a in by_cost if a is top or not pairs.test(a, top).significant)
    rival = best(fair, OTHER_SIDE[chosen.kind])
    head = pairs.test(rival, chosen) if rival else None
    ctx = _Context(chosen, top, rival, cost_of, constraints)
    reasons = _headline(ctx, head)
    reasons += _versus_cheaper(ctx, by_cost, pairs)
    reasons += _trade_off(ctx)
    reasons += _latency_caveat(ctx)
    reasons.append(stability(chosen, fair, rival).describe())
    reasons += _coverage_gaps(arms, unfair)
    reasons += _cost_reasons(fair, constraints, pairs)
    reasons += _budget_reasons(arms, unfair)
    reasons += _adaptive_reasons(arms)
    if ruled:
        reasons.append("ruled out: " + "; ".join(f"{k} ({v})" for k, v in ruled.items()))
    test = head if head is not None else (pairs.test(chosen, top) if chosen is not top else None)
    return Verdict(VERDICTS[chosen.kind], chosen.name, reasons, ruled, test, unfair)


OTHER_SIDE = {"prompt": ["finetune", "combined"], "finetune": ["prompt"], "combined": ["prompt"]}
SIDE_NAMES = {"prompt": "prompt", "finetune": "fine-tuned", "combined": "fine-tuned"}
WIDE_OVERLAP = 0.5
"""CIs overlap "widely" when the shared stretch is at least this share of the narrower interval."""


@dataclass
class _Context:
    chosen: ArmSummary
    top: ArmSummary
    rival: ArmSummary | None
    cost_of: dict[str, float]
    constraints: Constraints

    def month(self, a: ArmSummary) -> str:
        return f"${self.cost_of[a.name]:,.2f}/month"

    @property
    def volume(self) -> str:
        return f"{self.constraints.monthly_requests:,.0f} requests"


def _ci(a: ArmSummary) -> str:
    return f"[{a.ci_low:.3f}, {a.ci_high:.3f}]"


def _overlap(a: ArmSummary, b: ArmSummary) -> float:
    """Shared stretch of two CIs as a share of the narrower one (0: disjoint)."""
    shared = min(a.ci_high, b.ci_high) - max(a.ci_low, b.ci_low)
    narrower = min(a.ci_high - a.ci_low, b.ci_high - b.ci_low)
    return max(shared, 0.0) / narrower if narrower > 0 else float(shared >= 0)


def _headline(ctx: _Context, head: PairedTest | None) -> list[str]:
    """The first reasons: what the data says about the recommended arm against the other side's best."""
    c, r = ctx.chosen, ctx.rival
    summary = (f"{c.name}: {c.metric_name} {c.metric:.3f} {_ci(c)}, p95 latency {c.latency_p95:.3f} s "
               f"({c.latency_source}), {ctx.month(c)} at {ctx.volume}")
    if head is None or r is None:
        return [summary + f" (no fair {SIDE_NAMES[OTHER_SIDE[c.kind][0]]} arm to compare with)"]
    versus = f"the best {SIDE_NAMES[r.kind]} arm, {r.name} ({r.metric_name} {r.metric:.3f} {_ci(r)})"
    if not head.significant:
        need = needed_items(r, c)
        size = (f"about {need:,} paired test items would be needed to detect a {abs(head.difference):.3f} "
                f"difference (80% power, alpha 0.05, from the observed discordance)" if need else
                "the arms answered the shared items alike: no test size would separate them")
        if ctx.cost_of[c.name] <= ctx.cost_of[r.name]:
            basis = f"so the recommendation rests on cost: {c.name} {ctx.month(c)} vs {ctx.month(r)} at {ctx.volume}"
        else:
            basis = f"{c.name} is kept over the cheaper {r.name} because the best arm, {ctx.top.name}, is significantly better than {r.name}"
        return [f"NOT SIGNIFICANT: the test split cannot tell {c.name} from {versus}: {head.describe()}; {basis}; "
                f"{size}", summary]
    first = (f"{c.name} is significantly {'better' if c.measure.gain(head.difference) > 0 else 'worse'} than "
             f"{versus}: {head.describe()}")
    if _overlap(c, r) >= WIDE_OVERLAP:
        first += (f"; their 95% CIs overlap widely ({_ci(c)} vs {_ci(r)}): the paired test sees a difference the "
                  "separate intervals cannot, and the margin is small against the test split's noise")
    return [first, summary]


def _versus_cheaper(ctx: _Context, by_cost: Sequence[ArmSummary], pairs: PairStats) -> list[str]:
    """The recommended arm against the cheapest fair arm not significantly worse (itself, when the best
    is chosen: then against the cheapest cheaper fair arm, which every cheaper one is significantly below)."""
    c, top = ctx.chosen, ctx.top
    if c is not top and top is ctx.rival:
        return []  # the headline compared them already
    if c is not top:
        test = pairs.test(c, top)
        reasons = [f"{c.name} is the cheapest fair arm whose quality is not significantly below the best "
                   f"({top.name}): {ctx.month(c)} at {ctx.volume} vs {ctx.month(top)}; {test.describe()}"]
        # a large gap (5% of the metric's range) that is not significant: the test split is what is short
        if top.measure.gain(test.difference) >= 0.05 * top.measure.span:
            reasons.append(f"{top.name} scores {test.difference:+.3f} ({_better(top)}), but {test.n} paired test items cannot "
                           f"tell that from chance (p={test.p_value:.2g}): a larger test split may change this verdict")
        return reasons
    cheaper = [a for a in by_cost if ctx.cost_of[a.name] < ctx.cost_of[c.name] and a is not ctx.rival]
    if not cheaper:
        return []
    test = pairs.test(cheaper[0], c)
    return [f"{c.name} is significantly better than every cheaper fair arm; the cheapest: {test.describe()}"]


def _money_delta(x: float) -> str:
    return f"{'+' if x >= 0 else '-'}${abs(x):,.2f}"


def _trade_off(ctx: _Context) -> list[str]:
    """What the recommended arm buys against the other side's best, in one sentence."""
    c, r = ctx.chosen, ctx.rival
    if r is None:
        return []
    diff, extra = c.metric - r.metric, ctx.cost_of[c.name] - ctx.cost_of[r.name]
    what = f"{diff:+.3f} {c.metric_name} for {_money_delta(extra)}/month at {ctx.volume}"
    if c.measure.gain(diff) >= 0 and extra <= 0:
        return [f"trade-off: {c.name} vs {r.name} is {what}: better or level, and no dearer"]
    return [f"trade-off: {c.name} vs {r.name} is {what}"]


def _latency_caveat(ctx: _Context) -> list[str]:
    """Latencies measured two ways (a serving probe vs an evaluation's batch wall times, as in stores
    written before every arm was probed) are not one quantity: say so rather than compare them."""
    c, r = ctx.chosen, ctx.rival
    if r is None or c.latency_source == r.latency_source:
        return []
    return [f"latency NOT comparable: {c.name}'s p95 {c.latency_p95:.3f} s is from the {c.latency_source}, "
            f"{r.name}'s {r.latency_p95:.3f} s from the {r.latency_source} (re-run to probe both the same way)"]


def _coverage_gaps(arms: Sequence[ArmSummary], unfair: dict[str, str]) -> list[str]:
    """Collapsed arms named: not fair representatives; an untuned prompt arm that collapsed is a gap in
    the prompt side's coverage (its strategy was not given a fair try), not evidence against prompting."""
    gaps = [a for a in arms if a.name in unfair and not a.weights_changed and not a.tuning]  # untuned prompt arms
    rest = [a for a in arms if a.name in unfair and a not in gaps]
    reasons = []
    if gaps:
        each = "it was" if len(gaps) == 1 else "each was"
        reasons.append("gap in the prompt side's coverage: " + "; ".join(f"{a.name} collapsed ({unfair[a.name]})"
                                                                        for a in gaps)
                       + f"; {each} run untuned: not a fair representative of prompting (tune it on dev, or try "
                       "label words or calibration), so nothing here is measured against it")
    if rest:
        reasons.append("not fair representatives (collapsed), left out of the comparison: "
                       + "; ".join(f"{a.name} ({unfair[a.name]})" for a in rest))
    return reasons


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


BUDGET_RATIO = 3.0
"""Tuning budgets are called comparable when each side tried at least 2 candidates on the same dev split
and neither spent more than this many times the other's minutes (stated in the verdict with the figures)."""


def _budget_reasons(arms: Sequence[ArmSummary], unfair: dict[str, str]) -> list[str]:
    """Whether the two sides' best arms (fair ones where a side has any) had comparable tuning budgets on dev."""
    fair = [a for a in arms if a.name not in unfair]
    prompt = best(fair, ["prompt"]) or best(arms, ["prompt"])
    tuned = best(fair, ["finetune", "combined"]) or best(arms, ["finetune", "combined"])
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
    more = prompt if p["minutes"] > t["minutes"] else tuned
    if p["trials"] < 2 or t["trials"] < 2:
        verdict = "NOT comparable (one side tried one candidate)"
    elif ratio > BUDGET_RATIO:
        verdict = f"NOT comparable ({ratio:.0f}x more time on {more.name})"
    else:
        verdict = "comparable"
    return [f"tuning budgets {verdict}: {prompt.name} {p['trials']} candidates / {p['minutes']:.1f} min, "
            f"{tuned.name} {t['trials']} candidates / {t['minutes']:.1f} min on the same dev split (the rule: each "
            f"side tries at least 2 candidates and neither spends more than {BUDGET_RATIO:g}x the other's minutes)"]


def _adaptive_reasons(arms: Sequence[ArmSummary]) -> list[str]:
    """How many test items an adaptive evaluation scored, and why each arm stopped where it did."""
    stops = [a.adaptive for a in arms if a.adaptive is not None]
    if not stops:
        return []
    used, full = sum(s.items for s in stops), sum(s.n_test for s in stops)
    return [f"adaptive test evaluation (anytime-valid confidence sequences, alpha {stops[0].alpha:g} per comparison): "
            f"{used} of {full} arm-items scored ({1 - used / full:.0%} fewer); "
            + "; ".join(f"{s.arm} {s.items} ({s.why})" for s in stops)]
