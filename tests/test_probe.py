"""The serving probe, on a fake backend whose batched calls are slow and whose single requests are fast:
the probe times requests as a server answers them, and the table, the latency constraint and the
per-request cost read its figures rather than the evaluation's batch wall times."""

import time

import pytest

from tuneoff.config.experiment import Experiment
from tuneoff.config.specs import from_dict
from tuneoff.data import Example
from tuneoff.errors import TuneoffError
from tuneoff.evaluate.probe import probe, summarise_probe
from tuneoff.models.base import BackendInfo, Completion, Score
from tuneoff.prompting.arm import PromptArm, TaskContext
from tuneoff.store import Store

PAIR_SECONDS = 0.01
"""What the fake charges per scored (prompt, label) pair: a batch of 8 items x 2 labels waits 0.16 s."""
LABELS = ("negative", "positive")


class SlowBatchBackend:
    """Every call costs time in proportion to what it carries; `generate_one` is a fast engine."""

    batch_size = 8

    def __init__(self):
        self.info = BackendInfo(name="slow-batch")
        self.single_calls = 0
        self.batch_sizes: list[int] = []

    def render(self, messages, add_generation_prompt=True) -> str:
        return "\n".join(f"<{m['role']}>{m['content']}" for m in messages) + "\n<assistant>"

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def loglikelihood(self, chats, continuations):
        self.batch_sizes.append(len(chats))
        time.sleep(PAIR_SECONDS * len(chats))
        # "great" in the item makes it positive: the arm is right on the items below
        return [Score(logprob=-1.0 if (k == "positive") == ("great" in c[-1]["content"]) else -3.0, tokens=1,
                      tokens_in=len(self.render(c).split())) for c, k in zip(chats, continuations)]

    def generate(self, chats, config):
        self.batch_sizes.append(len(chats))
        time.sleep(4 * PAIR_SECONDS * len(chats))
        return [Completion("The answer is positive", 10, 5, 4 * PAIR_SECONDS * len(chats), len(chats)) for _ in chats]

    def generate_one(self, chat, config):
        self.single_calls += 1
        time.sleep(PAIR_SECONDS)
        return Completion("The answer is positive", 10, 5, PAIR_SECONDS)


def items(n: int) -> list[Example]:
    return [Example(input=f"a {'great' if i % 2 else 'dull'} film number {i}", target=LABELS[i % 2], id=f"t{i}")
            for i in range(n)]


CTX = TaskContext(name="sst2", labels=LABELS, instruction="positive or negative?")


def test_probe_times_single_requests_apart_from_micro_batches():
    backend, store = SlowBatchBackend(), Store(":memory:")
    run_id, s, reused = probe(backend, PromptArm(name="zero", mode="score"), items(8), CTX, concurrency=4,
                              store=store)
    assert not reused and s.items == 8 and s.concurrency == 4 and s.engine == "label scoring"
    assert backend.batch_sizes == [2] * 9 + [8, 8]  # warm-up + 8 single requests (2 labels each), 2 batches of 4
    assert 2 * PAIR_SECONDS <= s.single_p50 < s.batched_p50  # medians: robust to a busy machine's hiccups
    assert s.batched_p50 >= 8 * PAIR_SECONDS  # a request in a micro-batch waits for all of it
    assert s.seconds_per_request == pytest.approx(sum(s.batched_seconds) / 4 / 8, rel=1e-6)  # 2 batches of 4
    assert s.throughput == pytest.approx(1 / s.seconds_per_request)
    calls = store.calls(run_id)
    assert len(calls) == 16 and {c["batch_size"] for c in calls} == {1, 4}
    again = probe(backend, PromptArm(name="zero", mode="score"), items(8), CTX, concurrency=4, store=store)
    assert again[0] == run_id and again[2] and again[1] == s  # a rerun reuses the stored measurement


def test_generated_single_requests_go_through_generate_one():
    backend = SlowBatchBackend()
    _, s, _ = probe(backend, PromptArm(name="cot", chain_of_thought=True), items(6), CTX, concurrency=3)
    assert backend.single_calls == 7  # warm-up + 6
    assert backend.batch_sizes == [3, 3]
    assert s.single_p50 < s.batched_p50


def test_probe_answers_never_stand_in_for_evaluation_calls():
    """The probe's calls carry probe-only cache keys: an evaluation afterwards makes its own calls."""
    from tuneoff.evaluate import evaluate

    backend, store = SlowBatchBackend(), Store(":memory:")
    arm = PromptArm(name="cot", chain_of_thought=True)
    probe(backend, arm, items(4), CTX, concurrency=2, store=store)
    result = evaluate(backend, arm, items(4), CTX, store=store)
    assert result.cache_hits == 0 and result.cache_misses == 4


def test_summary_percentiles_and_throughput():
    s = summarise_probe([(0.1, 1), (0.2, 1), (0.3, 1), (0.4, 1)], [(1.0, 2), (1.0, 2)], 2, "transformers")
    assert s.single_p50 == pytest.approx(0.25) and s.batched_p95 == pytest.approx(1.0)
    assert s.throughput == pytest.approx(2.0) and s.seconds_per_request == pytest.approx(0.5)


def experiment(**extra) -> dict:
    return {"name": "p", "task": {"name": "sst2", "test": "t.tsv", "labels": list(LABELS)},
            "arms": [{"name": "zero"}], **extra}


def test_probe_and_ood_settings_are_checked_with_their_field():
    exp = from_dict(Experiment, experiment())
    assert (exp.probe.items, exp.probe.concurrency, exp.ood) == (16, 8, None)
    with pytest.raises(TuneoffError, match="probe.concurrency"):
        from_dict(Experiment, experiment(probe={"concurrency": 0}))
    with pytest.raises(TuneoffError, match="ood.n_test"):
        from_dict(Experiment, experiment(ood={"test": "ood.tsv", "n_test": 0}))
    exp = from_dict(Experiment, experiment(ood={"test": "ood.tsv", "name": "reviews"}, base_dir="/x"))
    ood = exp.ood.task_spec(exp.task)  # the main task's labels and metric, its own file
    assert (ood.name, ood.test, ood.labels, ood.metric, ood.train, ood.base_dir) == (
        "reviews", "ood.tsv", list(LABELS), "accuracy", None, "/x")


# -- a whole `tuneoff run` on the fake: the table reads the probe --------------------------------

@pytest.fixture
def fake_run(tmp_path, monkeypatch):
    """`tuneoff run` with every model load answered by the fake: 8 test items, one batch of 8 in the
    evaluation (each item waits at least 0.16 s), single requests 0.02 s (plus the machine's overhead)."""
    import tuneoff.experiment.context as context
    from tuneoff.experiment import run_experiment
    from tuneoff.compare.rebuild import comparison_from_store

    data = tmp_path / "test.tsv"
    data.write_text("label\tsentence\n" + "".join(f"{ex.target}\t{ex.input}\n" for ex in items(8)))
    backend = SlowBatchBackend()
    monkeypatch.setattr(context, "load_backend", lambda spec: backend)
    spec = experiment(model="fake", batch_size=8, probe={"items": 4, "concurrency": 2},
                      constraints={"latency_p95_s": 0.12}, base_dir=str(tmp_path), output=str(tmp_path / "out"))
    spec["task"].update(test=str(data), input="sentence", target="label")
    store = Store(tmp_path / "store.sqlite")
    experiment_id = run_experiment(from_dict(Experiment, spec), store)
    return comparison_from_store(store, experiment_id)


def test_the_table_and_the_latency_constraint_use_the_single_request_figure(fake_run):
    arm = fake_run.arms[0]
    assert arm.eval_latency_p95 >= 16 * PAIR_SECONDS  # the batch wall time each evaluated item rode in
    assert arm.latency_source == "serving probe" and arm.latency_p95 == arm.probe.single_p95 < 0.12
    latency = dict(fake_run.rows)["Latency p50 / p95"]["zero"]
    assert f"{arm.probe.single_p95:.3f} s per single request (serving probe, 4 requests)" in latency
    assert "evaluation" in dict(fake_run.rows)["Throughput"]["zero"]  # the batch figure is kept beside
    assert fake_run.verdict.ruled_out == {}  # 0.12 s p95 target: met by a single request, not by a batch
    assert "s machine time per request at 2 concurrent" in dict(fake_run.rows)["Cost per 1k requests"]["zero"]
    assert arm.cost().seconds_per_request == arm.probe.seconds_per_request
