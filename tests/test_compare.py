"""Statistics, costs, break-even and the recommendation, on hand-made arm summaries."""

import numpy as np
import pytest

from tuneoff.compare import ArmSummary, crossover, head_to_head, label_bias, paired_test, recommend
from tuneoff.compare.costs import ArmCost, monthly, one_off, payback, per_request
from tuneoff.config.prices import Constraints, PriceTable

IDS = [f"t:{i}" for i in range(100)]
COMPUTE_ONLY = {"engineer_per_hour": 0.0, "label_per_example": 0.0}
"""Prices with people and labels free: the tests of machine-time arithmetic."""


def arm(name, kind, correct, *, tokens_in=50, spr=0.1, setup=0.0, p95=0.2, needed=0, labels=("a", "b")):
    correct = list(map(float, correct))
    targets = ["a" if i % 2 else "b" for i in range(len(correct))]
    preds = [t if c else ("b" if t == "a" else "a") for t, c in zip(targets, correct)]
    m = float(np.mean(correct))
    return ArmSummary(name=name, kind=kind, model="m", metric_name="accuracy", metric=m, ci_low=m - 0.05,
                      ci_high=m + 0.05, item_ids=IDS[:len(correct)], correct=correct, predictions=preds,
                      targets=targets, labels=list(labels), tokens_in=tokens_in, tokens_out=1,
                      seconds_per_request=spr, setup_seconds=setup, latency_p50=p95 / 2, latency_p95=p95,
                      examples_needed=needed, trainable_parameters=1000 if kind != "prompt" else 0,
                      total_parameters=10_000)


def test_labels_are_priced_by_kind():
    """A written target (free text) costs a writer's time, a class label a click: each has its own price."""
    prices = PriceTable(label_per_example=0.10, written_per_example=1.00)
    label = one_off(ArmCost(10, 1, 0.1, labels_needed=100), prices)
    written = one_off(ArmCost(10, 1, 0.1, labels_needed=100, written=True), prices)
    assert written - label == pytest.approx(100 * (1.00 - 0.10))
    free = arm("few", "prompt", [1, 0] * 5, needed=100, labels=())
    free.labels = None
    assert free.cost().written and "per written target" in dict(head_to_head([free], prices))["One-off cost"]["few"]


def test_mcnemar_counts_discordant_pairs():
    a = arm("few-shot", "prompt", [1] * 60 + [0] * 40)
    b = arm("lora", "finetune", [1] * 60 + [1] * 30 + [0] * 10)  # 30 items only b gets right, 0 only a
    t = paired_test(a, b)
    assert t.n == 100 and t.difference == pytest.approx(0.30)
    assert t.p_value == pytest.approx(2 * 0.5 ** 30) and t.significant
    assert t.test == "McNemar exact, 0 vs 30 discordant"


def test_identical_arms_are_not_significant():
    a = arm("x", "prompt", [1, 0] * 50)
    t = paired_test(a, arm("y", "finetune", [1, 0] * 50))
    assert t.p_value == 1.0 and not t.significant and "not significant" in t.describe()


def test_bootstrap_for_graded_scores():
    a = arm("x", "prompt", [0.2] * 50)
    b = arm("y", "finetune", [0.9] * 50)
    t = paired_test(a, b)
    assert t.test.startswith("paired bootstrap") and t.significant and t.difference == pytest.approx(0.7)


def test_label_bias():
    b = label_bias(["a", "a", "a", "a"], ["a", "a", "b", "b"], ["a", "b"])
    assert b["tv_distance"] == pytest.approx(0.5)
    assert b["worst_class"] == "b" and b["worst_recall"] == 0.0


def test_crossover():
    assert crossover([(64, 0.7), (16, 0.5), (128, 0.9)], reference=0.75) == 128
    assert crossover([(16, 0.5)], reference=0.75) is None


def test_costs_hardware_and_api():
    p = PriceTable(hardware_per_hour=3.6, **COMPUTE_ONLY)  # $0.001 per second
    c = ArmCost(tokens_in=1000, tokens_out=10, seconds_per_request=0.5, one_off_seconds=100)
    assert per_request(c, p) == pytest.approx(0.0005)
    assert one_off(c, p) == pytest.approx(0.1)
    api = PriceTable(mode="api", input_per_1k_tokens=1.0, output_per_1k_tokens=2.0,
                     finetuned_input_per_1k_tokens=3.0)
    assert per_request(c, api) == pytest.approx(1.0 + 0.02)
    tuned = ArmCost(tokens_in=1000, tokens_out=10, seconds_per_request=0.5, finetuned=True)
    assert per_request(tuned, api) == pytest.approx(3.0 + 0.02)
    assert monthly(c, p, 1000) == pytest.approx(0.1 / 12 + 0.5)


def test_payback_volume():
    p = PriceTable(hardware_per_hour=3.6, horizon_months=1, **COMPUTE_ONLY)
    prompt = ArmCost(tokens_in=800, tokens_out=1, seconds_per_request=0.3)
    tuned = ArmCost(tokens_in=60, tokens_out=1, seconds_per_request=0.1, finetuned=True, one_off_seconds=1000)
    be = payback(prompt, tuned, p)
    assert be.volume == pytest.approx(1.0 / 0.0002)  # $1 one-off / $0.0002 saved per request
    assert monthly(prompt, p, be.volume) == pytest.approx(monthly(tuned, p, be.volume))
    assert payback(tuned, prompt, p).volume is None


def test_head_to_head_has_every_dimension():
    rows = head_to_head([arm("zero", "prompt", [1, 0] * 50), arm("lora", "finetune", [1] * 100, setup=60)],
                        PriceTable())
    dims = [d for d, _ in rows]
    for d in ("Methodology / model change", "Knowledge source", "Data requirement", "Performance",
              "Control & consistency", "Cost per 1k requests", "Latency p50 / p95", "Development effort",
              "Bias & hallucinations", "Time to first result", "Flexibility"):
        assert d in dims
    perf = dict(rows)["Performance"]
    assert perf["lora"].startswith("accuracy 1.000")


# -- the verdict responds to constraints ------------------------------------------------------

@pytest.fixture
def arms():
    few = arm("few-shot", "prompt", [1] * 70 + [0] * 30, tokens_in=600, spr=0.30, p95=0.6, needed=100)
    zero = arm("zero-shot", "prompt", [1] * 55 + [0] * 45, tokens_in=60, spr=0.05, p95=0.1)
    lora = arm("lora", "finetune", [1] * 70 + [1] * 22 + [0] * 8, tokens_in=60, spr=0.05, setup=900,
               p95=0.1, needed=500)
    return [few, zero, lora]


def test_default_verdict_is_fine_tuning_when_it_is_significantly_better(arms):
    v = recommend(arms, Constraints(monthly_requests=100_000), PriceTable())
    assert v.choice == "fine-tuning" and v.arm == "lora"
    assert any("0.920" in r for r in v.reasons)  # cites the measured metric


def test_few_examples_turn_the_verdict_to_prompting(arms):
    v = recommend(arms, Constraints(examples_available=200), PriceTable())
    assert v.choice == "prompt engineering" and v.arm == "few-shot"
    assert "needs 500 labelled examples, 200 available" in v.ruled_out["lora"]


def test_latency_target_rules_out_slow_arms(arms):
    v = recommend(arms, Constraints(latency_p95_s=0.2, examples_available=200), PriceTable())
    assert v.arm == "zero-shot" and "p95 latency 0.600 s" in v.ruled_out["few-shot"]


def test_unreachable_quality_target_says_so(arms):
    v = recommend(arms, Constraints(quality_target=0.99), PriceTable())
    assert v.arm == "lora" and v.reasons[0].startswith("no arm meets every constraint")


def test_insignificant_gap_prefers_the_cheaper_arm():
    a = arm("few-shot", "prompt", [1] * 80 + [0] * 20, tokens_in=600, spr=0.3)
    b = arm("lora", "finetune", [1] * 80 + [0] * 19 + [1], tokens_in=60, spr=0.05, setup=10)
    v = recommend([a, b], Constraints(monthly_requests=1_000_000), PriceTable(**COMPUTE_ONLY))
    assert v.arm == "lora"  # better and cheaper at this volume, once its data-preparation day is free
    v = recommend([a, b], Constraints(monthly_requests=10), PriceTable(training_per_hour=10_000))
    assert v.arm == "few-shot" and not v.test.significant  # training cost dominates at low volume


def test_break_even_is_never_for_a_significantly_worse_fine_tune():
    """Break-even means cheaper at equal or better quality: a cheaper but clearly worse fine-tune has none
    (its cost-only volume is kept for the chart); an insignificant gap counts as equal quality."""
    from tuneoff.compare import build_comparison
    from tuneoff.config.prices import Constraints

    prompt = arm("few-shot", "prompt", [1] * 90 + [0] * 10, tokens_in=600, spr=0.3)
    worse = arm("lora", "finetune", [1] * 60 + [0] * 40, tokens_in=60, spr=0.05, setup=10)  # above majority 0.5
    be = build_comparison("x", "t", "m", [prompt, worse], PriceTable(), Constraints()).break_even
    assert be.volume is None and be.reason.startswith("never at equal quality: lora scores 0.600 vs 0.900")
    assert be.cost_only_volume is not None and be.cost_only_volume > 0
    level = arm("lora", "finetune", [1] * 89 + [0] * 11, tokens_in=60, spr=0.05, setup=10)
    be = build_comparison("x", "t", "m", [prompt, level], PriceTable(), Constraints()).break_even
    assert be.volume == be.cost_only_volume is not None


def test_one_off_parts_sum_to_the_one_off_and_break_even_charges_them_all():
    """Labels and people's time are one-off costs too: a fine-tune pays its training labels and a day
    of data preparation on top of its compute, and the payback volume charges all of it."""
    from tuneoff.compare.costs import one_off_parts

    p = PriceTable(hardware_per_hour=3.6, horizon_months=1, label_per_example=0.5, engineer_per_hour=50,
                   prompt_hours=1, data_hours=4)
    prompt = ArmCost(tokens_in=800, tokens_out=1, seconds_per_request=0.3)
    tuned = ArmCost(tokens_in=60, tokens_out=1, seconds_per_request=0.1, finetuned=True, one_off_seconds=1000,
                    labels_needed=200)
    parts = one_off_parts(tuned, p)
    assert (parts.compute, parts.labels, parts.people, parts.hours) == pytest.approx((1.0, 100.0, 250.0, 5))
    assert parts.total == pytest.approx(parts.compute + parts.labels + parts.people) == one_off(tuned, p)
    assert one_off_parts(prompt, p).people == pytest.approx(50.0)  # prompt hours only
    extra = parts.total - one_off(prompt, p)  # 301 - 50
    assert payback(prompt, tuned, p).volume == pytest.approx(extra / 0.0002)


def test_one_off_row_names_its_parts():
    rows = dict(head_to_head([arm("lora", "finetune", [1] * 10, setup=3600, needed=256)], PriceTable()))
    cell = rows["One-off cost"]["lora"]
    # $0.10 compute (1 h at $0.10/h) + 256 labels x $0.10 + (2 + 8) h x $60
    assert cell == "$625.70 = compute $0.10 + labels $25.60 (256 x $0.10 per label) + people $600.00 (10 h x $60.00/h)"


def test_each_arm_is_priced_at_its_own_rates_and_break_even_uses_both():
    """Few-shot on a hosted model (per-token api prices) against LoRA on our own small model (machine time)."""
    api = PriceTable(mode="api", input_per_1k_tokens=0.5, output_per_1k_tokens=1.5, **COMPUTE_ONLY)
    hosted = arm("served-few-shot", "prompt", [1, 1, 0, 1], tokens_in=400, spr=2.0)
    hosted.prices, hosted.tokens_out, hosted.model = api, 2.0, "http://127.0.0.1:8000/v1#big"
    local = arm("lora", "finetune", [1, 0, 1, 1], tokens_in=60, spr=0.05, setup=3600.0)
    local.prices = PriceTable(mode="hardware", hardware_per_hour=0.36, **COMPUTE_ONLY)
    default = PriceTable(mode="hardware", hardware_per_hour=100.0)  # neither arm uses it (nor its people prices)
    assert per_request(hosted.cost(), default) == pytest.approx(400 / 1000 * 0.5 + 2 / 1000 * 1.5)
    assert per_request(local.cost(), default) == pytest.approx(0.36 / 3600 * 0.05)
    assert one_off(local.cost(), default) == pytest.approx(0.36)
    back = payback(hosted.cost(), local.cost(), default)
    assert back.volume == pytest.approx(0.36 / default.horizon_months / (0.203 - 0.36 / 3600 * 0.05))
    rows = dict(head_to_head([hosted, local], default))
    assert rows["Model"]["served-few-shot"].endswith("(api prices)")
    assert rows["Cost per 1k requests"]["served-few-shot"].startswith("$203")


def test_a_distilled_arm_carries_its_teacher_calls_as_one_off_cost():
    student = arm("student", "finetune", [1, 1, 0, 0], setup=0.0)
    student.one_off_dollars = 1.25
    assert one_off(student.cost(), PriceTable(**COMPUTE_ONLY)) == pytest.approx(1.25)
    assert monthly(student.cost(), PriceTable(horizon_months=5, **COMPUTE_ONLY), 0) == pytest.approx(0.25)
