"""What the comparison knows about one arm (`ArmSummary`) and a learning curve (`Curve`): plain
records the store rebuild fills (`compare.rebuild`) and every later step reads."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import IntFlag

from ..records import AdaptiveStop, ProbeSummary
from ..config.experiment import ArmKind
from ..config.prices import PriceTable
from ..metrics import Metric, get_metric
from .costs import ArmCost


class ItemFlag(IntFlag):
    """What went wrong with one item's answer, as bits (stored per item in `ArmSummary.flags`)."""

    FORMAT = 1
    """Format violation: no answer could be parsed from the output (or scoring failed)."""
    HALLUCINATED = 2
    """The answer is not one of the task's labels."""
    UNGROUNDED = 4
    """Free text: the reply states a number, name or quote its input does not support (`grounding`)."""
    CONSTRAINT = 8
    """The reply breaks the task's output constraints (JSON Schema, regex, word limit)."""

    @classmethod
    def of(cls, extra: dict) -> int:
        """The bits of a stored prediction's `extra` (`violation`, `hallucinated`)."""
        return ((cls.FORMAT if extra.get("violation") else 0) | (cls.HALLUCINATED if extra.get("hallucinated") else 0)
                | (cls.UNGROUNDED if extra.get("ungrounded") else 0) | (cls.CONSTRAINT if extra.get("format") else 0))

    def names(self) -> list[str]:
        return [n for flag, n in ((ItemFlag.FORMAT, "format violation"), (ItemFlag.HALLUCINATED, "hallucinated label"),
                                  (ItemFlag.UNGROUNDED, "unsupported content"),
                                  (ItemFlag.CONSTRAINT, "breaks output constraints")) if self & flag]


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
    """Per-item score mapped to [0, 1] (1/0 for accuracy-like metrics), aligned with `item_ids`."""
    predictions: list[str | None]
    targets: list[str]
    labels: list[str] | None = None
    inputs: list[str] = field(default_factory=list)
    """Item inputs (for the side-by-side sample in the report), aligned with `item_ids`."""
    outputs: list[str] = field(default_factory=list)
    """The model's raw output per item (the parsed answer is in `predictions`), aligned with `item_ids`."""
    flags: list[int] = field(default_factory=list)
    """`ItemFlag` bits per item, aligned with `item_ids`."""
    run_id: int | None = None
    trainable_parameters: int = 0
    total_parameters: int = 0
    examples_used: int = 0
    """Demos shown per request (prompt arms) or training examples (fine-tuned arms)."""
    examples_note: str = ""
    examples_needed: int = 0
    """Labelled examples the arm consumed in all: the sum of `label_parts` (the label rule)."""
    label_parts: dict[str, int] = field(default_factory=dict)
    """The label rule, by part: `training` examples, the `demo pool` it can reach (beyond its training
    examples: the same split), `dev (prompt search)` / `dev (fine-tune search)` items used to tune or
    select it. Every arm, either side, is charged for each labelled example it consumed."""
    format_violation_rate: float = 0.0
    hallucinated_label_rate: float = 0.0
    tokens_in: float = 0.0
    tokens_out: float = 0.0
    latency_p50: float = 0.0
    latency_p95: float = 0.0
    seconds_per_request: float = 0.0
    """The latency and machine time per request the table, the constraints and the cost use: the
    serving probe's (single request; its stated concurrency) when stored, else the evaluation's."""
    latency_source: str = "evaluation batches"
    """`serving probe`, or `evaluation batches` (older stores: each item's batch wall time)."""
    eval_latency_p95: float = 0.0
    """p95 of the evaluation's per-item waits (batch wall times): kept beside the probe's figures."""
    eval_seconds_per_item: float = 0.0
    """The evaluation's throughput cost: batch wall time / batch size."""
    probe: ProbeSummary | None = None
    ood: OutOfDomain | None = None
    """The arm on the out-of-domain test set, when the experiment has one."""
    setup_seconds: float = 0.0
    """Wall time before the first request can be served: training, optimisation (0 for plain prompts)."""
    optimise_calls: int = 0
    eval_seconds: float = 0.0
    training_tokens: int = 0
    agreement: float | None = None
    metric_spread: float | None = None
    tuning: dict = field(default_factory=dict)
    """What search the arm got on dev before its test number: {"trials", "minutes", "dev_metric",
    "chosen", "of"} ("of": the fine-tune whose search a combined arm's weights came from)."""
    runs: list[float] = field(default_factory=list)
    """The main metric of each repeat (new seeds), the ARM run first; empty when not repeated."""
    metric_std: float | None = None
    """Standard deviation of `runs` (ddof=1); `metric` is then their mean and the CI carries item
    and run variance (runs and items resampled together)."""
    collapsed: list[int] = field(default_factory=list)
    """Repeat indices whose metric fell to the majority-class rate or below: flagged, not averaged away silently."""
    run_stats: list[list[list[float]]] = field(default_factory=list)
    """[runs, items, d] main-metric statistics of each repeat (aligned with `item_ids`): tests over items
    and seeds recompute the metric from them. Empty: run once (`stats`)."""
    run_scores: list[list[float]] = field(default_factory=list)
    """[runs, items] per-item scores of each repeat (aligned with `item_ids`): the paired test and the
    verdict's stability resample seeds as well as items. Empty: run once."""
    deterministic: bool = False
    """Nothing in the arm is random (scored labels or greedy answers, fixed or similar demos) while repeats
    were asked for: one run says all there is (`ArmEntry.repeat_draws`)."""
    ran_on: str = ""
    """Where the arm's test scores were computed: dtype and device/CPU (empty in older stores)."""
    flexibility: dict = field(default_factory=dict)
    """{"task": name, "score": x, "base_score": y, "drop": y - x} when measured."""
    prices: PriceTable | None = None
    """The arm's own prices (`prices:` on the arm, e.g. api for a hosted model); None: the experiment's."""
    one_off_dollars: float = 0.0
    """One-off $ beyond training time: a distilled arm's teacher calls."""
    distillation: dict = field(default_factory=dict)
    """A distilled arm: {"teacher", "n_unlabelled", "teacher_metric", "agreement", "teacher_calls"}."""
    stats: list[list[float]] = field(default_factory=list)
    """The main metric's per-item statistics (aligned with `item_ids`; with repeats, their mean over runs):
    paired tests recompute the metric itself from them. Empty: built by hand, `correct` stands in."""
    secondary: dict[str, MetricScore] = field(default_factory=dict)
    """The task's secondary metrics, each with its CI and per-item statistics."""
    lengths: dict[str, float] = field(default_factory=dict)
    """Free text: output_words_mean, reference_words_mean, length_ratio, truncated_rate (stored metrics)."""
    adaptive: AdaptiveStop | None = None
    """Adaptive evaluation: the test items this arm scored (a prefix of the shuffled order) and why it
    stopped there; its items are then in that order. None: it scored the whole test split."""

    @property
    def measure(self) -> Metric:
        """The main metric's definition: its direction, range and kind."""
        return get_metric(self.metric_name)

    def item_stats(self) -> list[list[float]]:
        """Per-item statistics of the main metric (`correct` as a one-statistic mean when none were kept)."""
        return self.stats or [[c] for c in self.correct]

    @property
    def weights_changed(self) -> bool:
        return ArmKind(self.kind).changes_weights

    @property
    def approach(self) -> str:
        """`prompting`, `fine-tuning` or `both`."""
        return ArmKind(self.kind).approach

    def cost(self) -> ArmCost:
        return ArmCost(tokens_in=self.tokens_in, tokens_out=self.tokens_out,
                       seconds_per_request=self.seconds_per_request, finetuned=self.weights_changed,
                       one_off_seconds=self.setup_seconds, training_tokens=self.training_tokens,
                       labels_needed=self.examples_needed, written=not self.labels,
                       one_off_dollars=self.one_off_dollars, prices=self.prices)


@dataclass
class MetricScore:
    """One metric of one arm: value, 95% CI and the per-item statistics it was computed from."""

    name: str
    value: float
    ci_low: float
    ci_high: float
    stats: list[list[float]] = field(default_factory=list)

    @property
    def measure(self) -> Metric:
        return get_metric(self.name)


@dataclass
class OutOfDomain:
    """An arm's main metric on the out-of-domain test set, beside its in-domain figure."""

    task: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    """Items scored."""
    in_domain: float
    drop: float
    """in_domain - value: what the arm loses off its home ground."""


@dataclass
class Curve:
    """A learning curve: main metric against k demos (prompting) or n training examples."""

    arm: str
    axis: str
    """`shots` or `n_train`."""
    points: list[tuple[int, float, float, float]]
    """(x, metric, ci_low, ci_high), sorted by x."""


def scored_items(arms: list[ArmSummary]) -> dict[str, tuple[str, str]]:
    """Every item any arm scored: id -> (input, target as JSON)."""
    items: dict[str, tuple[str, str]] = {}
    for a in arms:
        for k, item in enumerate(a.item_ids):
            items.setdefault(item, (a.inputs[k] if k < len(a.inputs) else "", json.dumps(a.targets[k])))
    return items


def items_hash(items: dict[str, tuple[str, str]]) -> str:
    """A short hash of the test items (ids, inputs, targets): equal hashes, same test set."""
    blob = json.dumps(sorted((i, x, t) for i, (x, t) in items.items()), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
