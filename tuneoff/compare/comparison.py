"""The comparison: the table, the paired test between the best prompt arm and the best fine-tuned
arm, the learning-curve crossover, the break-even volume and the verdict, assembled from arm
summaries. Every pairwise figure is computed once (`PairStats`) and shared by all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config.prices import Constraints, PriceTable
from .arms import ArmSummary, Curve
from .evidence import collapse_reason
from .costs import OneOff, cost_curve, one_off_parts
from .pairs import PairStats
from .stats import PairedTest, best, confusion_matrix, crossover
from .table import head_to_head, label_parts_text, side_by_side
from .verdict import Verdict, recommend


@dataclass
class Crossover:
    """Where the fine-tuning learning curve overtakes the best prompt arm."""

    n: int | None
    """Smallest n training examples at which fine-tuning beats the reference, or None."""
    reference: str | None
    """The prompt arm it is measured against (the best one)."""
    text: str
    """One line for the report."""


@dataclass
class BreakEven:
    """Monthly volume at which the best fine-tuned arm becomes cheaper than the best prompt arm."""

    prompt: str
    tuned: str
    volume: float | None
    """None: never at equal quality, or never cheaper per request."""
    reason: str
    cost_only_volume: float | None
    """The volume on cost alone, ignoring quality."""
    volumes: list[float]
    """The x axis of the cost chart (requests per month)."""
    costs: dict[str, list[float]]
    """{arm: $ per month at each volume}."""
    expected: float | None = None
    """The user's expected monthly volume (`constraints.monthly_requests`), marked on the chart."""


@dataclass
class Comparison:
    """Everything the report shows; built from stored runs, so it can be rebuilt at any time."""

    experiment: str
    task: str
    model: str
    metric_name: str
    arms: list[ArmSummary]
    rows: list[tuple[str, dict[str, str]]]
    test: PairedTest | None
    curves: list[Curve]
    crossover: Crossover
    break_even: BreakEven | None
    verdict: Verdict
    latencies: dict[str, list[float]]
    confusion: dict[str, dict]
    """{arm: {"labels": [...], "matrix": [[...]]}} for the best prompt and best fine-tuned arms."""
    samples: list[dict]
    phases: dict[str, float] = field(default_factory=dict)
    """Wall time by phase (load, each arm's evaluation, training, report), in seconds."""
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    """Peak resident memory by phase, in MB (where the run measured it)."""
    experiment_id: int | None = None
    """The experiment's id in the store (`tuneoff report ID` re-renders it)."""
    one_off: dict[str, OneOff] = field(default_factory=dict)
    """{arm: its one-off cost by part (compute, labels, people)}: what the break-even charges."""
    judge: dict | None = None
    """The judge pass (`compare.judged`): spec, per-arm scores, reliability, cost; None without `judge:`."""
    labels: dict[str, str] = field(default_factory=dict)
    """{arm: the labelled examples it is charged for, by part (`256 training + 100 dev (fine-tune search) = 356`)}."""
    settings: dict[str, str] = field(default_factory=dict)
    """Dotted setting -> its value as JSON text: the experiment as run, each arm as evaluated, models,
    training fingerprints, the test items' hash (what `tuneoff diff` compares)."""
    environment: dict[str, str | None] = field(default_factory=dict)
    """Where it ran: tuneoff/torch/transformers versions, CPU and GPU names (empty: not recorded)."""
    created_at: float | None = None
    """When the experiment started (seconds since the epoch)."""
    dtype: str = ""
    """The experiment's evaluation dtype as written (`auto` resolves per machine)."""


def build_comparison(name: str, task: str, model: str, arms: list[ArmSummary], prices: PriceTable,
                     constraints: Constraints, curves: list[Curve] | None = None,
                     latencies: dict[str, list[float]] | None = None, phases: dict | None = None,
                     sample_size: int = 12) -> Comparison:
    """Assemble the table, paired test, crossover, break-even and verdict from arm summaries."""
    pairs = PairStats(prices)
    # collapsed arms are no fair representative of their side: the headline test pairs the best of the rest
    fair = [a for a in arms if collapse_reason(a) is None] or list(arms)
    prompt, tuned = best(fair, ["prompt"]), best(fair, ["finetune", "combined"])
    test = pairs.test(prompt, tuned) if prompt and tuned else None
    curves = curves or []
    be = break_even(prompt, tuned, test, pairs, constraints) if prompt and tuned else None
    confusion = {a.name: confusion_matrix(a) for a in (prompt, tuned) if a and a.labels}
    comparison = Comparison(name, task, model, arms[0].metric_name if arms else "", list(arms),
                            head_to_head(arms, prices), test, curves, learning_crossover(curves, prompt), be,
                            recommend(arms, constraints, prices, pairs), latencies or {}, confusion,
                            side_by_side(arms, sample_size), phases or {})
    comparison.one_off = {a.name: one_off_parts(a.cost(), prices) for a in arms}
    comparison.labels = {a.name: label_parts_text(a) for a in arms if a.label_parts}
    return comparison


def learning_crossover(curves: list[Curve], prompt: ArmSummary | None) -> Crossover:
    cross = Crossover(None, prompt.name if prompt else None, "no fine-tuning curve")
    ft_curve = next((c for c in curves if c.axis == "n_train"), None)
    if ft_curve and prompt:
        n = crossover([(x, m) for x, m, _, _ in ft_curve.points], prompt.metric, prompt.measure)
        cross.n = n
        cross.text = (f"fine-tuning overtakes {prompt.name} ({prompt.metric:.3f}) from n={n}" if n
                      else f"no crossover within the grid {[p[0] for p in ft_curve.points]}")
    return cross


def break_even(prompt: ArmSummary, tuned: ArmSummary, test: PairedTest | None, pairs: PairStats,
               constraints: Constraints) -> BreakEven:
    """Break-even is "cheaper at equal or better quality": a significantly worse arm never is."""
    b = pairs.payback(prompt, tuned)
    top = max(constraints.monthly_requests * 10, (b.volume or 0) * 2, 1000)
    # geometric steps from well below the smaller of the two volumes of interest: a break-even at 500
    # requests/month stays visible beside an expected 100,000 (a linear axis put it on the y axis)
    low = max(1.0, min(v for v in (b.volume, constraints.monthly_requests, top) if v) / 100)
    volumes = [low * (top / low) ** (i / 40) for i in range(41)]
    volume, reason = b.volume, b.reason
    if prompt.measure.better(prompt.metric, tuned.metric) and (test is None or test.significant):
        volume, reason = None, (f"never at equal quality: {tuned.name} scores {tuned.metric:.3f} vs "
                                f"{prompt.metric:.3f}{' (significant)' if test else ''}; on cost alone: "
                                + (f"{b.volume:,.0f} requests/month, " if b.volume is not None else "")
                                + b.reason)
    return BreakEven(prompt.name, tuned.name, volume, reason, b.volume, volumes,
                     {a.name: cost_curve(a.cost(), pairs.prices, volumes) for a in (prompt, tuned)},
                     constraints.monthly_requests)
