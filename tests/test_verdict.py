"""The verdict says what the data can and cannot tell: the recommended arm against the best fair arm of
the other side, collapsed arms left out and named, non-significance first with the test size needed,
seeds resampled with items, and the recommendation's stability."""

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from tuneoff.cli import build_app
from tuneoff.compare import build_comparison, recommend
from tuneoff.compare.evidence import collapse_reason, needed_items, seeded_test, stability
from tuneoff.compare.rebuild import comparison_from_store
from tuneoff.config.prices import Constraints, PriceTable
from tuneoff.store import Store

from test_compare import COMPUTE_ONLY, arm
from test_run_experiment import SST2_TASK


def one_label(name, n=100, **kw):
    """A prompt arm that answers `b` to everything: 0.5 on the alternating targets, never `a`."""
    a = arm(name, "prompt", [i % 2 == 0 for i in range(n)], **kw)
    a.predictions = ["b"] * n
    return a


def test_a_collapsed_arm_is_marked_and_never_the_comparison():
    few = arm("few-shot", "prompt", [1] * 70 + [0] * 30, tokens_in=600, spr=0.30)
    role = one_label("role", tokens_in=60, spr=0.05)  # cheapest, untuned, collapsed
    lora = arm("lora", "finetune", [1] * 70 + [1] * 22 + [0] * 8, tokens_in=60, spr=0.05, setup=900)
    assert collapse_reason(role).startswith("accuracy 0.500 at or below the majority-class rate 0.500")
    assert collapse_reason(few) is None and collapse_reason(lora) is None
    c = build_comparison("x", "t", "m", [few, role, lora], PriceTable(), Constraints(monthly_requests=100_000))
    v = c.verdict
    assert v.arm == "lora" and (v.test.a, v.test.b) == ("few-shot", "lora")  # the other side's best, not role
    assert v.reasons[0].startswith("lora is significantly better than the best prompt arm, few-shot")
    assert not any("lora - role" in r or "role - " in r for r in v.reasons)  # never tested against it
    gap = next(r for r in v.reasons if r.startswith("gap in the prompt side's coverage"))
    assert "role collapsed (accuracy 0.500 at or below the majority-class rate 0.500); it was run untuned" in gap
    assert "NOT A FAIR REPRESENTATIVE" in dict(c.rows)["Performance"]["role"]
    assert "NOT A FAIR REPRESENTATIVE" not in dict(c.rows)["Performance"]["few-shot"]
    assert c.test.a == "few-shot"  # the report's headline paired test too


def test_a_frequent_class_never_predicted_is_a_collapse_but_a_rare_one_is_not():
    a = arm("a", "prompt", [1] * 80 + [0] * 20)
    a.targets = ["x"] * 85 + ["y"] * 15
    a.labels = ["x", "y", "z"]
    a.predictions, a.metric = ["x"] * 100, 0.9  # above the majority rate, but one answer for everything
    assert collapse_reason(a) == "never predicts y"
    a.targets = ["x"] * 95 + ["y"] * 5  # 5% of the items: a good arm may miss a rare class
    a.predictions, a.metric = ["x"] * 97 + ["y"] * 3, 0.97
    assert collapse_reason(a) is None


def test_a_non_significant_result_changes_the_first_sentence():
    """The same two arms: on 100 items the gap is significant and the verdict leads with it; on 15 of
    the items it is not, and the verdict says so first, recommends by cost, names the test size."""
    few = arm("few-shot", "prompt", [1] * 70 + [0] * 30, tokens_in=600, spr=0.30)
    lora = arm("lora", "finetune", [1] * 70 + [1] * 22 + [0] * 8, tokens_in=60, spr=0.05, setup=900)
    c = Constraints(monthly_requests=100_000)
    sure = recommend([few, lora], c, PriceTable())
    assert sure.arm == "lora"
    assert sure.reasons[0].startswith("lora is significantly better than the best prompt arm, few-shot")
    small = [arm("few-shot", "prompt", few.correct[60:75], tokens_in=600, spr=0.30),
             arm("lora", "finetune", lora.correct[60:75], tokens_in=60, spr=0.05, setup=900)]
    unsure = recommend(small, c, PriceTable())
    first = unsure.reasons[0]
    # lora's people-days cost more than few-shot's tokens at this volume: by cost, few-shot
    assert unsure.arm == "few-shot"
    assert first.startswith("NOT SIGNIFICANT: the test split cannot tell few-shot from the best fine-tuned arm, lora")
    assert "p=0.0625: not significant at 0.05" in first  # 0 vs 5 discordant: McNemar's smallest p on 5
    need = needed_items(small[1], small[0])
    assert f"about {need:,} paired test items would be needed" in first and need > 15
    assert "so the recommendation rests on cost: few-shot" in first


def test_served_vs_finetuned_p_0501_is_stated_as_not_significant():
    """served-vs-finetuned's figures (10 vs 22 discordant of 100, p=0.0501): the verdict leads with it."""
    served = arm("served-few-shot", "prompt", [1] * 62 + [1] * 10 + [0] * 22 + [0] * 6, tokens_in=175, spr=0.3)
    lora = arm("lora", "finetune", [1] * 62 + [0] * 10 + [1] * 22 + [0] * 6, tokens_in=69, spr=0.05, setup=200)
    v = recommend([served, lora], Constraints(monthly_requests=100_000), PriceTable(**COMPUTE_ONLY))
    assert v.arm == "lora" and "p=0.0501: not significant at 0.05" in v.reasons[0]
    assert v.reasons[0].startswith("NOT SIGNIFICANT")


def test_needed_items_follows_connor_and_grows_with_discordance():
    x = arm("x", "prompt", [1] * 60 + [0] * 20 + [1] * 10 + [0] * 10)
    y = arm("y", "finetune", [1] * 60 + [1] * 20 + [0] * 10 + [0] * 10)  # 20 vs 10 discordant of 100
    # Connor 1987: (1.96 sqrt(0.3) + 0.8416 sqrt(0.3 - 0.01))^2 / 0.01 = 233.1
    assert needed_items(x, y) == 234
    noisier_x = arm("x", "prompt", [1] * 15 + [0] * 25 + [1] * 40 + [0] * 20)
    noisier = arm("y", "finetune", [0] * 15 + [1] * 25 + [1] * 40 + [0] * 20)  # 25 vs 15: the same +0.1
    assert needed_items(noisier_x, noisier) > needed_items(x, y)
    assert needed_items(x, x) is None  # no difference: no size separates them


def test_a_seed_spread_widens_the_paired_test():
    rng = np.random.default_rng(0)
    base = (rng.random(200) < 0.7).astype(float)
    better = np.where(rng.random(200) < 0.12, 1.0, base)  # ~+0.08
    prompt = arm("p", "prompt", base)
    steady = arm("ft", "finetune", better)
    steady.run_scores = [list(better)] * 3
    shaky = arm("ft", "finetune", better)
    worse = np.where(rng.random(200) < 0.3, 0.0, better)
    shaky.run_scores = [list(better), list(worse), list(better)]
    t_steady, t_shaky = seeded_test(prompt, steady), seeded_test(prompt, shaky)
    assert t_steady.test.startswith("paired bootstrap over items and seeds: p 1 run, ft 3 runs")
    assert t_shaky.p_value > t_steady.p_value


def test_stability_counts_resamples_where_the_recommended_arm_stays_best():
    few = arm("few-shot", "prompt", [1] * 70 + [0] * 30)
    lora = arm("lora", "finetune", [1] * 70 + [1] * 22 + [0] * 8)
    twin = arm("twin", "finetune", [1] * 70 + [1] * 22 + [0] * 8)
    s = stability(lora, [few, lora], few)
    assert s.ahead == pytest.approx(1.0) and s.first == pytest.approx(1.0) and not s.seeds
    s = stability(lora, [few, lora, twin], few)  # an identical arm ties: ties count for it
    assert s.first == pytest.approx(1.0)
    close = arm("close", "prompt", [1] * 70 + [1] * 2 + [0] * 28)  # +0.02 on 2 vs 0 discordant
    s = stability(close, [few, close], few)
    assert 0.5 < s.ahead <= 1.0 and "stays at or above few-shot in" in s.describe()


def test_on_a_tiny_model_a_non_significant_result_leads_the_verdict(tiny_dir, tmp_path):
    """End to end on a tiny random Llama: with 5 test items no paired test can reach p < 0.05 (McNemar's
    smallest p on 5 discordant items is 0.0625), so the verdict's first sentence must say so."""
    path = tmp_path / "ns.yaml"
    path.write_text(yaml.safe_dump({
        "version": 1, "name": "ns", "model": str(tiny_dir), "batch_size": 8, "output": str(tmp_path / "out"),
        "task": {**SST2_TASK, "n_test": 5, "split_fraction": 0.25},
        "arms": [{"name": "zero-shot", "prompt": {"mode": "score"}},
                 {"name": "lora", "finetune": {"method": "lora", "n_train": 8, "epochs": 1, "batch_size": 8}}]}))
    db = tmp_path / "store.sqlite"
    result = CliRunner().invoke(build_app(), ["run", str(path), "--store", str(db)], terminal_width=200)
    assert result.exit_code == 0, result.output
    v = comparison_from_store(Store(db), 1).verdict
    assert not v.test.significant and v.test.n == 5
    other = "prompt" if v.arm == "lora" else "fine-tuned"
    assert v.reasons[0].startswith(f"NOT SIGNIFICANT: the test split cannot tell {v.arm} from the best {other} arm")
    assert "paired test items would be needed" in v.reasons[0] or "no test size would separate them" in v.reasons[0]


def test_break_even_is_never_when_prompts_are_equally_long():
    """Machine-time costs 1% apart (two 70-token prompts) are timing noise: no break-even of 10^8 requests."""
    from tuneoff.compare.costs import ArmCost, payback

    p = PriceTable(hardware_per_hour=0.10)
    few = ArmCost(tokens_in=73, tokens_out=0, seconds_per_request=0.0487)
    lora = ArmCost(tokens_in=70, tokens_out=0, seconds_per_request=0.0482, finetuned=True, one_off_seconds=170)
    be = payback(few, lora, p)
    assert be.volume is None and be.reason.startswith("never: the per-request costs are equal within measurement noise")
    short = ArmCost(tokens_in=67, tokens_out=0, seconds_per_request=0.0459, finetuned=True, one_off_seconds=170)
    long = ArmCost(tokens_in=289, tokens_out=0, seconds_per_request=0.3375)
    assert payback(long, short, p).volume is not None  # a 4x shorter prompt is a real saving
    api = PriceTable(mode="api", input_per_1k_tokens=1.0, output_per_1k_tokens=1.0)
    assert payback(few, lora, api).volume is not None  # token prices are exact: 3 tokens saved is real


def test_comparable_budgets_is_a_stated_rule_not_a_word_next_to_9x():
    few = arm("few-shot", "prompt", [1] * 70 + [0] * 30)
    lora = arm("lora+few-shot", "combined", [1] * 72 + [0] * 28)
    few.tuning = {"trials": 6, "minutes": 1.0, "dev_metric": 0.7, "chosen": "shots=8"}
    lora.tuning = {"trials": 2, "minutes": 9.8, "dev_metric": 0.8, "chosen": "lr"}
    reasons = recommend([few, lora], Constraints(), PriceTable()).reasons
    budget = next(r for r in reasons if r.startswith("tuning budgets"))
    assert budget.startswith("tuning budgets NOT comparable (10x more time on lora+few-shot)")
    assert "neither spends more than 3x the other's minutes" in budget
    lora.tuning["minutes"] = 2.0
    budget = next(r for r in recommend([few, lora], Constraints(), PriceTable()).reasons if r.startswith("tuning"))
    assert budget.startswith("tuning budgets comparable: few-shot 6 candidates / 1.0 min")


def test_changes_are_signed_and_labels_are_charged_by_part():
    from tuneoff.compare import head_to_head
    from tuneoff.compare.arms import OutOfDomain

    lora = arm("lora", "finetune", [1] * 85 + [0] * 15)
    lora.ood = OutOfDomain("reviews-ood", 0.95, 0.875, 1.0, 40, 0.855, 0.855 - 0.95)
    lora.flexibility = {"task": "banking77", "score": 0.18, "base_score": 0.06, "drop": 0.06 - 0.18}
    lora.label_parts, lora.examples_needed = {"training": 256, "dev (fine-tune search)": 100}, 356
    rows = dict(head_to_head([lora], PriceTable()))
    assert "change +0.095 vs in-domain 0.855" in rows["Out of domain"]["lora"]
    assert "(change +0.120)" in rows["Flexibility"]["lora"] and "drop" not in rows["Flexibility"]["lora"]
    assert "labels $35.60 (256 training + 100 dev (fine-tune search) = 356 x $0.10 per label)" in rows["One-off cost"]["lora"]


def test_a_tuning_row_shows_the_dev_noise_of_chosen_and_runner_up():
    from tuneoff.compare import head_to_head

    zero = arm("zero-shot", "prompt", [1] * 70 + [0] * 30)
    zero.tuning = {"trials": 4, "minutes": 0.1, "dev_metric": 0.625, "chosen": "calibration=contextual", "of": None,
                   "dev_n": 40, "runner_up": 0.6}
    cell = dict(head_to_head([zero], PriceTable()))["Tuning on dev"]["zero-shot"]
    assert "dev 0.625 [0.470, 0.758] on 40 dev items" in cell  # Wilson 95% interval
    assert "runner-up dev 0.600: inside the chosen's CI, the two cannot be told apart" in cell
    assert "WARNING: 40 dev items are too few to separate candidates closer than ±0.14" in cell


def test_latencies_measured_two_ways_are_called_not_comparable():
    served = arm("served-few-shot", "prompt", [1] * 72 + [0] * 28, p95=14.9)
    lora = arm("lora", "finetune", [1] * 84 + [0] * 16, p95=0.165)
    lora.latency_source = "serving probe"
    reasons = recommend([served, lora], Constraints(), PriceTable(**COMPUTE_ONLY)).reasons
    caveat = next(r for r in reasons if r.startswith("latency NOT comparable"))
    assert "lora's p95 0.165 s is from the serving probe, served-few-shot's 14.900 s from the evaluation batches" in caveat
    served.latency_source = "serving probe"
    assert not any(r.startswith("latency NOT") for r in recommend([served, lora], Constraints(), PriceTable()).reasons)
