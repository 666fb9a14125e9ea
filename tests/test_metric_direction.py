"""Metrics know themselves: every registered metric declares its direction, range and kind, and the
comparison reads the direction from it, so a lower-is-better main metric (TER here; a hallucination
rate later) ranks, crosses over and wins the verdict the right way round."""

import numpy as np
import pytest

from tuneoff.compare import ArmSummary, crossover, recommend
from tuneoff.compare.comparison import build_comparison
from tuneoff.compare.stats import best, paired_test
from tuneoff.config.prices import Constraints, PriceTable
from tuneoff.metrics import METRICS, Direction, get_metric


def test_every_metric_declares_direction_range_and_kind():
    for name, m in METRICS.items():
        assert m.name == name and m.description
        assert isinstance(m.direction, Direction)
        assert m.high is None or m.high > m.low
        assert not (m.binary and m.corpus)
    assert get_metric("ter").direction is Direction.LOWER and get_metric("ter").high is None
    assert get_metric("bleu").corpus and get_metric("chrf").corpus and not get_metric("rougeL").corpus
    assert get_metric("accuracy").binary and get_metric("accuracy").higher_is_better


def ter_arm(name: str, kind: str, edits: list[float], *, spr: float = 0.1) -> ArmSummary:
    """An arm whose items each need `edits[i]` edits against a 10-word reference: TER = 10 x mean edits."""
    stats = [[e, 10.0] for e in edits]
    m = get_metric("ter").value_of(np.array(stats))
    ids = [f"t:{i}" for i in range(len(edits))]
    return ArmSummary(name=name, kind=kind, model="m", metric_name="ter", metric=m, ci_low=m - 1, ci_high=m + 1,
                      item_ids=ids, correct=[get_metric("ter").unit(10 * e) for e in edits],
                      predictions=["x"] * len(edits), targets=["y"] * len(edits), stats=stats, tokens_in=50,
                      tokens_out=20, seconds_per_request=spr, latency_p95=0.2,
                      trainable_parameters=1000 if kind != "prompt" else 0, total_parameters=10_000)


def test_a_lower_is_better_main_metric_makes_the_lowest_arm_win():
    rng = np.random.default_rng(0)
    few = ter_arm("few-shot", "prompt", list(rng.integers(5, 9, 80).astype(float)))  # TER ~65
    lora = ter_arm("lora", "finetune", list(rng.integers(1, 4, 80).astype(float)), spr=0.05)  # TER ~20
    zero = ter_arm("zero-shot", "prompt", list(rng.integers(7, 10, 80).astype(float)), spr=0.01)  # cheapest, worst
    arms = [zero, few, lora]
    assert lora.metric < few.metric < zero.metric
    assert best(arms, ["prompt"]) is few and best(arms, ["finetune"]) is lora
    test = paired_test(few, lora)
    # the difference is TER's own (corpus TER of b minus a, 0-100+), negative = lora better
    assert test.difference == pytest.approx(lora.metric - few.metric) and test.significant
    assert test.test == "paired bootstrap of ter"
    verdict = recommend(arms, Constraints(monthly_requests=1000), PriceTable())
    assert verdict.arm == "lora" and verdict.choice == "fine-tuning"
    # the headline: lower TER is better, worded so; and lora stays first when the items are resampled
    assert verdict.reasons[0].startswith("lora is significantly better than the best prompt arm, few-shot")
    assert "ranks first among the fair arms in 100%" in " ".join(verdict.reasons)


def test_quality_target_crossover_and_break_even_follow_the_direction():
    few = ter_arm("few-shot", "prompt", [5.0] * 40)   # TER 50
    lora = ter_arm("lora", "finetune", [3.0] * 40)    # TER 30
    ruled = recommend([few, lora], Constraints(quality_target=40.0), PriceTable())
    assert "few-shot" in ruled.ruled_out and "> target" in ruled.ruled_out["few-shot"]
    assert crossover([(8, 70.0), (32, 45.0), (128, 30.0)], few.metric, few.measure) == 32
    comparison = build_comparison("e", "t", "m", [few, lora], PriceTable(), Constraints())
    assert comparison.verdict.arm == "lora"
    # lora is better (lower TER): the break-even is not "never at equal quality"
    assert comparison.break_even is not None and "never at equal quality" not in comparison.break_even.reason
