"""The store -> comparison rebuild on a store filled by hand: no model, no training. Each run is
written through the same typed records (`tuneoff.records`) the real writers use, so a renamed field
or role breaks this test, not only the slow end-to-end one."""

import pytest

from tuneoff.compare.rebuild import comparison_from_store
from tuneoff.config.specs import from_dict, to_dict
from tuneoff.config.experiment import Experiment
from tuneoff.records import EvalSummary, ExperimentSummary, MainMetric, OptimiseSummary, Role, TrainStats
from tuneoff.store import Store

LABELS = ["negative", "positive"]
TARGETS = ["positive", "negative"] * 10  # 20 test items


def experiment() -> Experiment:
    return from_dict(Experiment, {
        "name": "hand", "model": "embedded:smollm2-135m-instruct",
        "task": {"name": "sst2", "test": "unused.tsv", "labels": LABELS},
        "arms": [{"name": "zero-shot", "prompt": {"mode": "score"}},
                 {"name": "opt", "prompt": {"mode": "score", "optimise": {"budget": 30}}},
                 {"name": "lora", "finetune": {"method": "lora", "n_train": 64}},
                 {"name": "lora+few", "finetuned": "lora", "prompt": {"shots": 4, "demo_selection": "similar"}}],
        "constraints": {"monthly_requests": 1000}})


def eval_run(store: Store, arm: str, correct: list[int], latency: float, tokens_in: int, value=None) -> int:
    run = store.start_run("eval", arm=arm, task="sst2", split="test", model="m", spec={"shots": 0})
    rows = []
    for i, (target, ok) in enumerate(zip(TARGETS, correct)):
        call = store.add_call(run_id=run, model="m", prompt=f"{arm}-{i}", params={}, output="x",
                              tokens_in=tokens_in, tokens_out=1, latency_s=latency)
        guess = target if ok else next(lab for lab in LABELS if lab != target)
        rows.append({"item": i, "example_id": f"t{i}", "input": f"review {i}", "target": target, "output": guess,
                     "prediction": guess, "correct": float(ok), "call_id": call})
    store.add_predictions(run, rows)
    acc = sum(correct) / len(correct) if value is None else value
    store.set_metric(run, "accuracy", acc, acc - 0.1, acc + 0.1)
    for name, v in (("tokens_in_mean", tokens_in), ("tokens_out_mean", 1.0), ("latency_p50", latency),
                    ("latency_p95", latency), ("seconds_per_item", latency)):
        store.set_metric(run, name, float(v))
    store.finish_run(run, "done", EvalSummary(1.0, 0, 20, 0, MainMetric("accuracy", acc).to_dict()).to_dict())
    return run


def stats(seconds: float, examples: int) -> TrainStats:
    return TrainStats(steps=8, epochs=1.0, examples=examples, dropped_examples=0, prompt_truncated=0, tokens=4000,
                      label_tokens=200, padded_tokens=4500, seconds=seconds, tokens_per_second=4000 / seconds,
                      flops=1e12, trainable_parameters=1000, total_parameters=100000, peak_memory_mb=10.0,
                      final_loss=0.3)


@pytest.fixture
def filled(tmp_path):
    store = Store(tmp_path / "hand.sqlite")
    exp = experiment()
    eid = store.add_experiment(exp.name, to_dict(exp))
    link = lambda run, role, arm, x=None: store.link_run(eid, run, role.value, arm, x)  # noqa: E731
    link(eval_run(store, "zero-shot", [1, 0] * 10, 0.2, 60), Role.ARM, "zero-shot")
    opt = store.start_run("optimise", arm="opt", task="sst2", split="dev", model="m")
    store.finish_run(opt, "done", OptimiseSummary(calls_spent=27, budget=30, dev_score=0.7).to_dict())
    link(opt, Role.OPTIMISE, "opt")
    link(eval_run(store, "opt", [1, 1, 1, 0] * 5, 0.2, 80), Role.ARM, "opt")
    train = store.start_run("finetune", arm="lora", task="sst2", model="m")
    store.finish_run(train, "done", {"output_dir": "x", **stats(50.0, 64).to_dict()})
    link(train, Role.FINETUNE, "lora")
    link(eval_run(store, "lora", [1] * 19 + [0], 0.1, 40), Role.ARM, "lora")
    link(eval_run(store, "lora+few", [1] * 18 + [0, 0], 0.3, 200), Role.ARM, "lora+few")
    for n, value in ((16, 0.6), (64, 0.95)):
        link(eval_run(store, "lora", [1] * 20, 0.1, 40, value=value), Role.CURVE, "lora", n)
    link(eval_run(store, "base-flex", [0] * 20, 0.1, 40, value=0.5), Role.FLEXIBILITY_BASE, "base")
    link(eval_run(store, "lora-flex", [0] * 20, 0.1, 40, value=0.4), Role.FLEXIBILITY, "lora")
    store.finish_experiment(eid, ExperimentSummary({"total": 9.0}, {"train": 500, "dev": 40, "test": 20}).to_dict())
    return store, eid


def test_rebuild_reads_every_role_through_the_records(filled):
    store, eid = filled
    c = comparison_from_store(store, eid)
    arms = {a.name: a for a in c.arms}
    assert list(arms) == ["zero-shot", "opt", "lora", "lora+few"]
    assert arms["zero-shot"].metric == pytest.approx(0.5) and arms["lora"].metric == pytest.approx(0.95)
    lora = arms["lora"]
    assert (lora.trainable_parameters, lora.total_parameters, lora.setup_seconds) == (1000, 100000, 50.0)
    assert lora.examples_used == 64 and lora.training_tokens == 4000
    assert arms["lora+few"].setup_seconds == 50.0  # a combined arm carries its fine-tune's training
    # the label rule: the optimiser's bootstrapped demo sets reach the 500 training rows, and it scored its
    # candidates on min(dev_items 40, budget 30) dev items
    assert arms["opt"].optimise_calls == 27 and arms["opt"].examples_needed == 500 + 30
    assert arms["opt"].label_parts == {"demo pool": 500, "dev (prompt search)": 30}
    assert arms["lora"].label_parts == {"training": 64} and arms["zero-shot"].label_parts == {}
    # a combined arm with similar demos reaches the whole training split; its 64 training rows are part
    # of it and charged once
    from tuneoff.compare.rebuild import _charge_labels

    combined = arms["lora+few"]
    combined.label_parts = {"demo pool": 500, "training": 64, "dev (fine-tune search)": 40}
    _charge_labels(combined)
    assert combined.label_parts == {"demo pool": 436, "training": 64, "dev (fine-tune search)": 40}
    assert combined.examples_needed == 540
    assert lora.flexibility == {"task": "sst2", "score": 0.4, "base_score": 0.5, "drop": pytest.approx(0.1),
                                "weights_of": None}
    assert arms["lora+few"].flexibility["weights_of"] == "lora"
    assert arms["lora"].latency_p95 == pytest.approx(0.1)
    assert c.phases == {"total": 9.0}


def test_rebuild_derives_the_comparison_from_the_stored_numbers(filled):
    store, eid = filled
    c = comparison_from_store(store, eid)
    assert c.test.a == "opt" and c.test.b == "lora"  # best prompt arm vs best fine-tuned arm
    assert c.crossover.reference == "opt" and c.crossover.n == 64  # 0.95 beats opt's 0.75 from n=64
    assert c.break_even.prompt == "opt" and c.break_even.tuned == "lora"
    assert c.break_even.volume is not None  # cheaper per request and better: it pays back
    assert [cur.axis for cur in c.curves] == ["n_train"] and [p[0] for p in c.curves[0].points] == [16, 64]
    # lora's 0.95 vs opt's 0.75 is 4 vs 0 discordant items of 20: not significant, and opt costs less
    assert c.verdict.choice == "prompt engineering" and c.verdict.arm == "opt"
    # the first sentence says the data cannot separate them, recommends by cost and names the test size
    first = c.verdict.reasons[0]
    assert first.startswith("NOT SIGNIFICANT: the test split cannot tell opt from the best fine-tuned arm, lora")
    assert "so the recommendation rests on cost" in first and "paired test items would be needed" in first
    assert len(c.latencies["lora"]) == 20


def test_unknown_role_in_a_store_is_an_error_not_a_silent_skip(filled):
    store, eid = filled
    store.link_run(eid, 1, "curve_tran", "zero-shot")
    with pytest.raises(ValueError, match="curve_tran"):
        comparison_from_store(store, eid)


def test_repeats_give_mean_std_a_wider_ci_and_flag_a_collapsed_run(filled):
    store, eid = filled
    single = {a.name: a for a in comparison_from_store(store, eid).arms}["lora"]
    # two more runs of lora with new seeds: one as good, one collapsed to the majority-class rate (0.5)
    link = lambda run, x: store.link_run(eid, run, Role.REPEAT.value, "lora", x)  # noqa: E731
    link(eval_run(store, "lora", [1] * 18 + [0, 0], 0.1, 40), 1)
    link(eval_run(store, "lora", [1, 0] * 10, 0.1, 40), 2)
    c = comparison_from_store(store, eid)
    lora = {a.name: a for a in c.arms}["lora"]
    assert lora.runs == pytest.approx([0.95, 0.9, 0.5])
    assert lora.metric == pytest.approx(0.7833, abs=1e-3) and lora.metric_std == pytest.approx(0.2466, abs=1e-3)
    assert (lora.ci_high - lora.ci_low) > (single.ci_high - single.ci_low)  # run variance widens it
    assert lora.collapsed == [2]
    row = dict(c.rows)["Performance"]["lora"]
    assert "± 0.247 over 3 seeds (0.950, 0.900, 0.500)" in row and "1 of 3 runs collapsed (at or below the majority-class rate)" in row
    assert c.test.b == "lora+few"  # lora's mean over its runs fell below the combined arm's 0.90
    from tuneoff.compare import paired_test

    opt = {a.name: a for a in c.arms}["opt"]
    assert paired_test(opt, lora).test == "paired bootstrap of accuracy"  # per-item means over runs: graded scores
    # the comparison's own tests (PairStats: table, verdict, break-even) resample lora's seeds with the items
    from tuneoff.compare.pairs import PairStats
    from tuneoff.config.prices import PriceTable

    assert PairStats(PriceTable()).test(opt, lora).test.startswith("paired bootstrap over items and seeds: opt 1 run, lora 3 runs")
    assert lora.run_scores and len(lora.run_scores) == 3


def test_repeats_that_replay_the_same_answers_make_a_deterministic_arm(filled):
    """A scored prompt with fixed demos answers the same on every repeat: no spread to report, one run."""
    store, eid = filled
    for x in (1, 2):
        store.link_run(eid, eval_run(store, "opt", [1, 1, 1, 0] * 5, 0.2, 80), Role.REPEAT.value, "opt", x)
    c = comparison_from_store(store, eid)
    opt = {a.name: a for a in c.arms}["opt"]
    assert opt.deterministic and opt.runs == [] and opt.metric_std is None
    row = dict(c.rows)["Performance"]["opt"]
    assert "deterministic (1 run" in row and "±" not in row


def test_repeated_ci_widens_with_run_variance():
    import numpy as np

    from tuneoff.compare.stats import repeated_ci

    items = np.array([1.0] * 70 + [0.0] * 30)
    same = np.stack([items, items, items])
    spread = np.stack([items, np.roll(items, 30) * 0 + (np.arange(100) < 40), items])
    low1, high1 = repeated_ci(same)
    low2, high2 = repeated_ci(spread)
    assert high2 - low2 > high1 - low1 and low2 < low1


def test_a_store_without_probes_keeps_the_evaluation_latency_labelled(filled):
    """Stores written before the serving probe still rebuild: the batch figures stand, said to be so."""
    store, eid = filled
    c = comparison_from_store(store, eid)
    lora = {a.name: a for a in c.arms}["lora"]
    assert lora.probe is None and lora.latency_source == "evaluation batches"
    assert lora.latency_p95 == pytest.approx(0.1) and lora.seconds_per_request == pytest.approx(0.1)
    assert "no serving probe stored" in dict(c.rows)["Latency p50 / p95"]["lora"]


def test_a_stored_probe_sets_latency_cost_and_the_latency_constraint(filled):
    from tuneoff.compare import per_request, recommend
    from tuneoff.config.prices import Constraints, PriceTable
    from tuneoff.records import ProbeSummary

    store, eid = filled
    # zero-shot's evaluated items each waited 0.2 s (their batch); one request alone waits 0.03 s
    run = store.start_run("probe", arm="zero-shot", task="sst2", split="test", model="m")
    store.finish_run(run, "done", ProbeSummary(
        items=4, concurrency=2, engine="label scoring", single_p50=0.02, single_p95=0.03, batched_p50=0.01,
        batched_p95=0.01, throughput=200.0, seconds_per_request=0.005, single_seconds=[0.02] * 4,
        batched_seconds=[0.01] * 4).to_dict())
    store.link_run(eid, run, Role.PROBE.value, "zero-shot")
    c = comparison_from_store(store, eid)
    zero = {a.name: a for a in c.arms}["zero-shot"]
    assert (zero.latency_p50, zero.latency_p95, zero.latency_source) == (0.02, 0.03, "serving probe")
    assert zero.eval_latency_p95 == pytest.approx(0.2)  # kept beside, for the Throughput row
    assert per_request(zero.cost(), PriceTable()) == pytest.approx(0.10 / 3600 * 0.005)
    assert c.latencies["zero-shot"] == [0.02] * 4
    verdict = recommend(c.arms, Constraints(latency_p95_s=0.05), PriceTable())
    assert "zero-shot" not in verdict.ruled_out
    assert verdict.ruled_out["opt"] == "p95 latency 0.200 s (evaluation batches) > target 0.050 s"
