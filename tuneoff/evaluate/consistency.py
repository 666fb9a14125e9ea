"""Consistency: does an arm's answer survive rewording its instruction and re-drawing its samples?

The arm runs once per (instruction paraphrase, sampling seed); agreement is the share of items
every variant predicts identically, spread is how far the main metric moves between variants.
Variants are ordinary evaluation runs in the store (identical prompts share cached calls), and
the summary is a run of kind `consistency`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..data import Example
from ..errors import TuneoffError
from ..metrics import get_metric
from .engine import EvalResult, evaluate
from ..models.base import Backend
from ..prompting.arm import PromptArm, TaskContext
from ..records import ConsistencySummary
from ..store import Store


@dataclass(frozen=True)
class Variant:
    """One reworded / reseeded run of the arm."""

    instruction: str | None
    """The instruction template used (None: the task's default)."""
    seed: int
    """Seed for sampling and random demo selection."""
    result: EvalResult = field(repr=False)
    """The variant's evaluation (its own run in the store)."""


@dataclass
class ConsistencyResult:
    """How stable an arm's predictions and score are across variants."""

    arm: PromptArm
    """The arm checked."""
    variants: list[Variant]
    """One per (instruction, seed)."""
    metric: str
    """Name of the main metric the spread is measured on."""
    agreement: float
    """Share of items that every variant predicts identically."""
    mean: float
    """Mean of the main metric across variants."""
    std: float
    """Sample standard deviation of the main metric across variants (0 for one variant)."""
    low: float
    """Lowest main metric of any variant."""
    high: float
    """Highest main metric of any variant."""
    run_id: int
    """The summary run (kind `consistency`) in the store."""

    @property
    def spread(self) -> float:
        return self.high - self.low


def agreement(predictions: Sequence[Sequence[str | None]]) -> float:
    """Share of items on which all prediction lists (one per variant, aligned) agree."""
    if not predictions or not predictions[0]:
        return float("nan")
    same = [len({p[i] for p in predictions}) == 1 for i in range(len(predictions[0]))]
    return float(np.mean(same))


def metric_agreement(name: str, predictions: Sequence[Sequence[str | None]]) -> float:
    """Free text: how alike the variants' replies are, by the main metric itself. Each ordered pair of
    variants scores one's replies with the other's as references; the mean of those corpus values,
    mapped to [0, 1] by the metric's range (identical strings would be ~0 for summaries)."""
    metric = get_metric(name)
    values = [metric.unit(metric.value_of(metric.stats_many(predictions[j], [[r or ""] for r in predictions[i]])))
              for i in range(len(predictions)) for j in range(len(predictions)) if i != j]
    values = values if metric.higher_is_better else [1.0 - v for v in values]  # TER 0 between variants: alike
    return float(np.mean(values)) if values else float("nan")


def consistency(backend: Backend, arm: PromptArm, examples: Sequence[Example], task, *,
                paraphrases: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
                store: Store | None = None, split: str = "test", console=None) -> ConsistencyResult:
    """Run `arm` under each instruction (its own plus `paraphrases`) and each of `seeds`.

    paraphrases: instruction templates (default: the arm's `paraphrases`).
    seeds: sampling / random-demo seeds (default: the arm's `seeds`, else its `seed`); they only
        change answers when the arm samples (temperature > 0) or draws random demos.
    """
    ctx = TaskContext.of(task)
    paraphrases = list(arm.paraphrases if paraphrases is None else paraphrases)
    seeds = list(seeds if seeds is not None else (arm.seeds or [arm.seed]))
    if not paraphrases and len(seeds) < 2:
        raise TuneoffError("consistency needs paraphrases or at least two seeds", field="paraphrases",
                           hint="give the arm `paraphrases: [...]` and/or `seeds: [0, 1, 2]`")
    store = store or Store(":memory:")
    variants = []
    for p, instruction in enumerate([arm.instruction, *paraphrases]):
        for seed in seeds:
            variant = arm.replace(name=f"{arm.name}~p{p}~s{seed}", instruction=instruction, seed=seed,
                                  paraphrases=[], seeds=[])
            result = evaluate(backend, variant, examples, ctx, store=store, split=split, console=console)
            variants.append(Variant(instruction, seed, result))
    values = np.array([v.result.main.value or 0.0 for v in variants])
    replies = [[row["prediction"] for row in v.result.predictions] for v in variants]
    free_text = ctx.labels is None and not get_metric(ctx.metric).binary
    agree = metric_agreement(ctx.metric, replies) if free_text else agreement(replies)
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    run_id = store.start_run("consistency", arm=arm.name, task=ctx.name, split=split, model=backend.info.name,
                             spec={"arm": arm.to_dict(), "paraphrases": paraphrases, "seeds": seeds})
    summary = ConsistencySummary(agree, std, ctx.metric, [v.result.run_id for v in variants], values.tolist())
    extra = {k: v for k, v in summary.to_dict().items() if k not in ("agreement", "std")}
    extra["agreement_by"] = ctx.metric if free_text else "identical predictions"
    for name, value in (("agreement", agree), ("metric_mean", float(values.mean())), ("metric_std", std),
                        ("metric_min", float(values.min())), ("metric_max", float(values.max()))):
        store.set_metric(run_id, name, value, extra=extra)
    store.finish_run(run_id, "done", summary.to_dict())
    return ConsistencyResult(arm, variants, ctx.metric, agree, float(values.mean()), std,
                             float(values.min()), float(values.max()), run_id)
