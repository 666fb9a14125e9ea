"""The head-to-head: one column per arm, one row per dimension of the usual prompt-engineering vs
fine-tuning comparison, each cell a measurement (or a stated fact about the run), plus the paired
test between the best prompt arm and the best fine-tuned arm and the learning-curve crossover.

Everything here works on `ArmSummary` records, which the runner builds from the store, so the
report can be recomputed from stored predictions at any time.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import stats

from .costs import ArmCost, PriceTable, one_off, per_request


@dataclass
class ArmSummary:
    """Everything measured about one arm on the test split."""

    name: str
    kind: str
    """`prompt` (weights fixed), `finetune` (weights changed), `combined` (fine-tuned + prompted)."""
    model: str
    metric_name: str
    metric: float
    ci_low: float
    ci_high: float
    item_ids: list[str]
    correct: list[float]
    """Per-item score (1/0 for accuracy-like metrics), aligned with `item_ids`."""
    predictions: list[str | None]
    targets: list[str]
    labels: list[str] | None = None
    inputs: list[str] = field(default_factory=list)
    """Item inputs (for the side-by-side sample in the report), aligned with `item_ids`."""
    run_id: int | None = None
    trainable_parameters: int = 0
    total_parameters: int = 0
    examples_used: int = 0
    """Demos shown per request (prompt arms) or training examples (fine-tuned arms)."""
    examples_note: str = ""
    examples_needed: int = 0
    """Labelled examples the arm needs in all: demo pool, training set, dev items for optimising."""
    format_violation_rate: float = 0.0
    hallucinated_label_rate: float = 0.0
    tokens_in: float = 0.0
    tokens_out: float = 0.0
    latency_p50: float = 0.0
    latency_p95: float = 0.0
    seconds_per_request: float = 0.0
    setup_seconds: float = 0.0
    """Wall time before the first request can be served: training, optimisation (0 for plain prompts)."""
    optimise_calls: int = 0
    eval_seconds: float = 0.0
    training_tokens: int = 0
    agreement: float | None = None
    metric_spread: float | None = None
    flexibility: dict = field(default_factory=dict)
    """{"task": name, "score": x, "base_score": y, "drop": y - x} when measured."""

    @property
    def weights_changed(self) -> bool:
        return self.kind in ("finetune", "combined")

    def cost(self) -> ArmCost:
        return ArmCost(tokens_in=self.tokens_in, tokens_out=self.tokens_out,
                       seconds_per_request=self.seconds_per_request, finetuned=self.weights_changed,
                       one_off_seconds=self.setup_seconds, training_tokens=self.training_tokens)


# -- statistics -------------------------------------------------------------------------------

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

    def describe(self) -> str:
        verdict = "significant" if self.significant else "not significant"
        return (f"{self.b} - {self.a} = {self.difference:+.3f} on {self.n} paired items "
                f"({self.test}, p={self.p_value:.3g}: {verdict} at 0.05)")


def paired_test(a: ArmSummary, b: ArmSummary, alpha: float = 0.05, seed: int = 0,
                resamples: int = 2000) -> PairedTest:
    """McNemar's exact test when scores are 0/1, else a paired bootstrap of the mean difference."""
    shared = {i: k for k, i in enumerate(a.item_ids)}
    pairs = [(a.correct[shared[i]], b.correct[k]) for k, i in enumerate(b.item_ids) if i in shared]
    x = np.array([p[0] for p in pairs], dtype=float)
    y = np.array([p[1] for p in pairs], dtype=float)
    diff = float(y.mean() - x.mean()) if len(pairs) else 0.0
    if len(pairs) and set(np.unique(np.concatenate([x, y]))) <= {0.0, 1.0}:
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
    return PairedTest(a.name, b.name, test, p, diff, len(pairs), p < alpha)


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


# -- the table --------------------------------------------------------------------------------

def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _money(x: float) -> str:
    return f"${x:.4f}" if x < 100 else f"${x:,.0f}"


def head_to_head(arms: Sequence[ArmSummary], prices: PriceTable) -> list[tuple[str, dict[str, str]]]:
    """Rows (dimension, {arm name: cell}) of the comparison table."""
    rows: list[tuple[str, dict[str, str]]] = []

    def row(dimension: str, cell) -> None:
        rows.append((dimension, {a.name: cell(a) for a in arms}))

    row("Methodology / model change", lambda a: (
        f"weights changed ({a.trainable_parameters:,} of {a.total_parameters:,} trainable)" if a.weights_changed
        else "weights fixed; input only"))
    row("Knowledge source", lambda a: {
        "prompt": "pre-trained weights + what the prompt carries",
        "finetune": "pre-trained weights + training set baked into weights",
        "combined": "fine-tuned weights + what the prompt carries"}[a.kind])
    row("Data requirement", lambda a: f"{a.examples_used} {a.examples_note}".strip())
    row("Performance", lambda a: f"{a.metric_name} {a.metric:.3f} [{a.ci_low:.3f}, {a.ci_high:.3f}]")
    row("Control & consistency", lambda a: "; ".join(filter(None, [
        f"agreement {_pct(a.agreement)}" if a.agreement is not None else "",
        f"spread ±{a.metric_spread:.3f}" if a.metric_spread is not None else "",
        f"format violations {_pct(a.format_violation_rate)}"])))
    row("Cost per 1k requests", lambda a: (
        f"{_money(1000 * per_request(a.cost(), prices))} ({a.tokens_in:.0f} in / {a.tokens_out:.1f} out tokens)"))
    row("One-off cost", lambda a: _money(one_off(a.cost(), prices)))
    row("Latency p50 / p95", lambda a: f"{a.latency_p50:.3f} s / {a.latency_p95:.3f} s")
    row("Development effort", lambda a: "; ".join(filter(None, [
        f"{a.setup_seconds:.0f} s training/optimising" if a.setup_seconds else "no training",
        f"{a.optimise_calls} optimiser calls" if a.optimise_calls else ""])))
    row("Bias & hallucinations", lambda a: _bias_cell(a))
    row("Time to first result", lambda a: f"{a.setup_seconds + a.eval_seconds:.0f} s")
    row("Flexibility", lambda a: (
        f"{a.flexibility['task']}: {a.flexibility['score']:.3f} vs base {a.flexibility['base_score']:.3f} "
        f"(drop {a.flexibility['drop']:+.3f})"
        + (f", {a.flexibility['weights_of']}'s weights" if a.flexibility.get("weights_of") else "") if a.flexibility else
        ("same weights serve any task (prompt swap)" if not a.weights_changed else "not measured")))
    return rows


def _bias_cell(a: ArmSummary) -> str:
    parts = [f"hallucinated labels {_pct(a.hallucinated_label_rate)}", f"invalid {_pct(a.format_violation_rate)}"]
    if a.labels:
        b = label_bias(a.predictions, a.targets, a.labels)
        parts.append(f"label TV {b['tv_distance']:.2f}, worst recall {b['worst_recall']:.2f} ({b['worst_class']})")
    return "; ".join(parts)


@dataclass
class Curve:
    """A learning curve: main metric against k demos (prompting) or n training examples."""

    arm: str
    axis: str
    """`shots` or `n_train`."""
    points: list[tuple[int, float, float, float]]
    """(x, metric, ci_low, ci_high), sorted by x."""


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
    crossover: dict
    """{"n": smallest n where fine-tuning beats the best prompt arm or None, "reference": arm, "text": ...}."""
    break_even: dict
    """{"prompt": arm, "tuned": arm, "volume": v or None, "reason": ..., "volumes": [...], "costs": {arm: [...]}}."""
    verdict: object
    latencies: dict[str, list[float]]
    confusion: dict[str, dict]
    """{arm: {"labels": [...], "matrix": [[...]]}} for the best prompt and best fine-tuned arms."""
    samples: list[dict]
    phases: dict[str, float] = field(default_factory=dict)
    """Wall time by phase (load, each arm's evaluation, training, report), in seconds."""
    experiment_id: int | None = None
    """The experiment's id in the store (`tuneoff report ID` re-renders it)."""


def build_comparison(name: str, task: str, model: str, arms: list[ArmSummary], prices: PriceTable,
                     constraints, curves: list[Curve] | None = None,
                     latencies: dict[str, list[float]] | None = None, phases: dict | None = None,
                     sample_size: int = 12) -> Comparison:
    """Assemble the table, paired test, crossover, break-even and verdict from arm summaries."""
    from .costs import break_even, cost_curve
    from .recommend import recommend

    prompt, tuned = best(arms, ["prompt"]), best(arms, ["finetune", "combined"])
    test = paired_test(prompt, tuned) if prompt and tuned else None
    curves = curves or []
    cross: dict = {"n": None, "reference": prompt.name if prompt else None, "text": "no fine-tuning curve"}
    ft_curve = next((c for c in curves if c.axis == "n_train"), None)
    if ft_curve and prompt:
        n = crossover([(x, m) for x, m, _, _ in ft_curve.points], prompt.metric)
        cross.update(n=n, text=(f"fine-tuning overtakes {prompt.name} ({prompt.metric:.3f}) from n={n}" if n
                                else f"no crossover within the grid {[p[0] for p in ft_curve.points]}"))
    be: dict = {}
    if prompt and tuned:
        b = break_even(prompt.cost(), tuned.cost(), prices)
        top = max(constraints.monthly_requests * 10, (b.volume or 0) * 2, 1000)
        volumes = [top * i / 20 for i in range(21)]
        volume, reason = b.volume, b.reason
        if tuned.metric < prompt.metric and (test is None or test.significant):
            # break-even is "cheaper at equal or better quality": a significantly worse arm never is
            volume, reason = None, (f"never at equal quality: {tuned.name} scores {tuned.metric:.3f} vs "
                                    f"{prompt.metric:.3f}{' (significant)' if test else ''}; on cost alone: "
                                    + (f"{b.volume:,.0f} requests/month, " if b.volume is not None else "")
                                    + b.reason)
        be = {"prompt": prompt.name, "tuned": tuned.name, "volume": volume, "reason": reason,
              "cost_only_volume": b.volume,
              "volumes": volumes, "costs": {a.name: cost_curve(a.cost(), prices, volumes) for a in (prompt, tuned)}}
    confusion = {a.name: confusion_matrix(a) for a in (prompt, tuned) if a and a.labels}
    return Comparison(name, task, model, arms[0].metric_name if arms else "", list(arms), head_to_head(arms, prices),
                      test, curves, cross, be, recommend(arms, constraints, prices), latencies or {}, confusion,
                      side_by_side(arms, sample_size), phases or {})


def confusion_matrix(a: ArmSummary) -> dict:
    """Rows: true label; columns: predicted label (+ a last column for unparseable/other)."""
    labels = list(a.labels or [])
    index = {lab: k for k, lab in enumerate(labels)}
    matrix = [[0] * (len(labels) + 1) for _ in labels]
    for t, p in zip(a.targets, a.predictions):
        if t in index:
            matrix[index[t]][index.get(p, len(labels))] += 1
    return {"labels": labels, "matrix": matrix}


def side_by_side(arms: Sequence[ArmSummary], n: int) -> list[dict]:
    """The first n shared items with every arm's prediction, disagreements first."""
    if not arms:
        return []
    common = set(arms[0].item_ids).intersection(*[set(a.item_ids) for a in arms[1:]])
    pos = [{i: k for k, i in enumerate(a.item_ids)} for a in arms]
    rows = []
    for item in (i for i in arms[0].item_ids if i in common):
        preds = {a.name: a.predictions[p[item]] for a, p in zip(arms, pos)}
        k = pos[0][item]
        rows.append({"id": item, "input": arms[0].inputs[k] if arms[0].inputs else "", "target": arms[0].targets[k],
                     "predictions": preds, "disagree": len(set(map(str, preds.values()))) > 1})
    rows.sort(key=lambda r: not r["disagree"])
    return rows[:n]
