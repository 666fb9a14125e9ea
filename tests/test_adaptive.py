"""Adaptive evaluation (`adaptive:`) end to end on scripted fake models of known accuracy: the verdict
is the plain evaluation's, with fewer test items; each arm's stop is stored, shown and explained;
the YAML section's mistakes name their field."""

from __future__ import annotations

import json
import math
import re

import pytest

from tuneoff.compare.rebuild import comparison_from_store
from tuneoff.config.experiment import Experiment
from tuneoff.config.specs import from_dict
from tuneoff.errors import TuneoffError
from tuneoff.models.base import BackendInfo, Score
from tuneoff.records import AdaptiveStop, AdaptiveSummary, StopReason
from tuneoff.store import Store

LABELS = ("negative", "positive")
N_TEST = 192
GOLDEN = (math.sqrt(5) - 1) / 2


def difficulty(k: int) -> float:
    """Item k's difficulty in [0, 1), spread evenly (golden-ratio sequence): a model of accuracy p is
    right exactly on the items below p, so arms are paired as models of one family are."""
    return (k * GOLDEN) % 1.0


class KnownAccuracy:
    """A scoring model right on the items easier than its accuracy; it counts the items it scored."""

    batch_size = 16

    def __init__(self, name: str, accuracy: float, fail_after: int | None = None):
        self.info = BackendInfo(name=name)
        self.accuracy, self.scored, self.fail_after = accuracy, 0, fail_after

    def render(self, messages, add_generation_prompt=True) -> str:
        return "\n".join(f"<{m['role']}>{m['content']}" for m in messages) + "\n<assistant>"

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def loglikelihood(self, chats, continuations):
        if self.fail_after is not None and self.scored >= self.fail_after:
            raise RuntimeError("backend went away")
        scores = []
        for chat, label in zip(chats, continuations):
            k = int(re.search(r"item (\d+)", chat[-1]["content"]).group(1))
            right = difficulty(k) < self.accuracy
            truth = LABELS[k % 2]
            scores.append(Score(logprob=-1.0 if (label == truth) == right else -3.0, tokens=1, tokens_in=20))
        self.scored += len(chats) // len(LABELS)
        return scores


MODELS = {"big": 0.92, "mid": 0.90, "small": 0.55}
"""Arms on three fake models: big and mid are too close to tell apart on 192 items, small is far below."""


def run(tmp_path, monkeypatch, adaptive: dict | None, prices: dict[str, float], models: dict = MODELS,
        fail_after: dict | None = None, curves: dict | None = None):
    """`tuneoff run` on the fake models, into the folder's store: (comparison, store, items each model scored)."""
    import tuneoff.experiment.context as context
    from tuneoff.experiment import run_experiment

    tmp_path.mkdir(exist_ok=True)
    data = tmp_path / "test.tsv"
    data.write_text("label\tsentence\n" + "".join(f"{LABELS[k % 2]}\treview item {k}\n" for k in range(N_TEST)))
    train = tmp_path / "train.tsv"  # demos for the curves; the fake model reads the item from the last turn
    train.write_text("label\tsentence\n" + "".join(f"{LABELS[k % 2]}\tdemo {k}\n" for k in range(8)))
    backends = {name: KnownAccuracy(name, p, (fail_after or {}).get(name)) for name, p in models.items()}
    monkeypatch.setattr(context, "load_backend", lambda spec: backends[spec.name])
    spec = {"name": "adaptive" if adaptive else "plain", "model": "big", "batch_size": 16,
            "task": {"name": "sst2", "test": str(data), "train": str(train), "input": "sentence",
                     "target": "label", "labels": list(LABELS)},
            "arms": [{"name": name, "model": name, "prompt": {"mode": "score"},
                      "prices": {"mode": "api", "input_per_1k_tokens": prices[name]}} for name in models],
            "probe": {"items": 0}, "constraints": {"monthly_requests": 100000},
            **({"curves": curves} if curves else {}),
            "base_dir": str(tmp_path), "output": str(tmp_path / "out"),
            **({"adaptive": adaptive} if adaptive else {})}
    store = Store(tmp_path / f"{spec['name']}.sqlite")
    experiment_id = run_experiment(from_dict(Experiment, spec), store)
    return comparison_from_store(store, experiment_id), store, {n: b.scored for n, b in backends.items()}


ADAPTIVE = {"chunk": 16, "alpha": 0.05, "min_items": 32}
CHEAP_MID = {"big": 0.01, "mid": 0.001, "small": 0.0001}
"""mid is cheaper than big and not significantly worse: the verdict picks it; small is cheapest but far worse."""


def test_adaptive_reaches_the_plain_verdict_with_fewer_items(tmp_path, monkeypatch):
    plain, _, plain_scored = run(tmp_path / "p", monkeypatch, None, CHEAP_MID)
    fast, store, scored = run(tmp_path / "a", monkeypatch, ADAPTIVE, CHEAP_MID)
    assert plain.verdict.arm == fast.verdict.arm == "mid"
    assert plain_scored == {name: N_TEST for name in MODELS}
    arms = {a.name: a for a in fast.arms}
    # small is settled below the leader after a few chunks and stops; big and mid cannot be told apart
    small = arms["small"].adaptive
    assert small.reason is StopReason.SETTLED_BELOW and small.versus == "big" and small.cs_low > 0
    assert small.items < N_TEST // 2 and scored["small"] == small.items == len(arms["small"].item_ids)
    assert {arms[n].adaptive.reason for n in ("big", "mid")} == {StopReason.REACHED_N_TEST}
    assert sum(scored.values()) < sum(plain_scored.values())
    # the comparison pairs small with the others on the items it scored, and shows the sequence beside
    test = fast.verdict.test
    assert (test.a, test.b, test.n) == ("mid", "big", N_TEST) and test.sequence is not None
    assert test.sequence.low <= 0 <= test.sequence.high
    assert "anytime-valid 95% confidence sequence" in test.describe()
    cells = dict(fast.rows)["Test items (adaptive)"]
    assert cells["small"].startswith(f"{small.items} of {N_TEST} items: settled below big (big - small in [+")
    assert cells["big"] == f"{N_TEST} of {N_TEST} items: reached n_test"
    assert any(r.startswith("adaptive test evaluation") and f"small {small.items} (settled below big)" in r
               for r in fast.verdict.reasons)
    # the stopping record is stored as a typed summary, once per experiment
    link = store.linked_runs(1, "adaptive")[0]
    record = AdaptiveSummary.from_json(store.run(link["run_id"])["summary_json"])
    assert (record.chunk, record.alpha, record.min_items, record.n_test) == (16, 0.05, 32, N_TEST)
    assert record.stop("small") == small and record.items_scored == sum(scored.values())


def test_the_best_arm_stops_once_every_other_arm_is_settled(tmp_path, monkeypatch):
    """big is the cheapest as well as the best: once every other arm is settled below it, nothing is
    left to compare and every arm stops; the plain run's verdict is the same arm."""
    prices, models = {"big": 0.0001, "mid": 0.001, "small": 0.01}, {"big": 0.95, "mid": 0.6, "small": 0.55}
    plain, _, _ = run(tmp_path / "p", monkeypatch, None, prices, models)
    fast, _, scored = run(tmp_path / "a", monkeypatch, ADAPTIVE, prices, models)
    assert plain.verdict.arm == fast.verdict.arm == "big"
    stops = {a.name: a.adaptive for a in fast.arms}
    assert {stops[n].reason for n in ("mid", "small")} == {StopReason.SETTLED_BELOW}
    assert stops["big"].reason is StopReason.BEST
    assert stops["big"].items == max(stops["mid"].items, stops["small"].items) < N_TEST
    assert sum(scored.values()) <= 3 * N_TEST // 2


def test_curve_points_score_the_items_their_arm_scored(tmp_path, monkeypatch):
    """Under `adaptive:`, a curve of an arm settled early is on that arm's items: its own point (k=0 here)
    is the arm's number from the cache, the other point costs its items only, not the whole split."""
    fast, _, scored = run(tmp_path, monkeypatch, ADAPTIVE, CHEAP_MID, curves={"prompt_arm": "small", "shots": [0, 2]})
    small = next(a for a in fast.arms if a.name == "small")
    assert small.adaptive.items < N_TEST and scored["small"] == 2 * small.adaptive.items
    curve = next(c for c in fast.curves if c.axis == "shots")
    assert curve.arm == "small" and curve.points[0][:2] == (0, small.metric)


def test_an_interrupted_adaptive_run_resumes_where_it_stopped(tmp_path, monkeypatch):
    """A model that fails mid-way leaves every arm's run failed with what it scored; the rerun resumes
    them (the same seeded order, the same fingerprints), scores only the rest, and ends as a fresh run."""
    with pytest.raises(RuntimeError, match="went away"):
        run(tmp_path / "r", monkeypatch, ADAPTIVE, CHEAP_MID, fail_after={"mid": 80})
    store = Store(tmp_path / "r" / "adaptive.sqlite")
    failed = store.db.execute("SELECT arm, status FROM runs WHERE kind='eval'").fetchall()
    assert sorted(tuple(r) for r in failed) == [("big", "failed"), ("mid", "failed"), ("small", "failed")]
    resumed, _, scored = run(tmp_path / "r", monkeypatch, ADAPTIVE, CHEAP_MID)
    fresh, _, fresh_scored = run(tmp_path / "f", monkeypatch, ADAPTIVE, CHEAP_MID)
    assert scored["mid"] == fresh_scored["mid"] - 80  # the 80 items scored before the failure are kept
    assert [(a.name, a.metric, a.adaptive) for a in resumed.arms] == [(a.name, a.metric, a.adaptive) for a in fresh.arms]
    assert resumed.verdict.arm == fresh.verdict.arm


def test_a_stop_record_round_trips():
    stop = AdaptiveStop("few", 64, 200, StopReason.SETTLED_BELOW, "lora", 0.05, 0.4)
    again = AdaptiveStop.from_dict(json.loads(json.dumps(stop.to_dict())))
    assert again == stop and again.reason is StopReason.SETTLED_BELOW
    assert again.describe() == ("64 of 200 items: settled below lora (lora - few in [+0.050, +0.400], "
                                "anytime-valid 95%)")


def experiment(**extra) -> dict:
    return {"name": "x", "task": {"name": "t", "test": "t.tsv", "labels": list(LABELS)},
            "arms": [{"name": "a"}, {"name": "b"}], **extra}


@pytest.mark.parametrize("bad, field", [
    ({"chunk": 0}, "adaptive.chunk"), ({"alpha": 1.5}, "adaptive.alpha"), ({"alpha": 0}, "adaptive.alpha"),
    ({"min_items": 0}, "adaptive.min_items"), ({"margin": -0.1}, "adaptive.margin"),
    ({"chunks": 16}, "adaptive.chunks"), ({"chunk": "many"}, "adaptive.chunk")])
def test_adaptive_mistakes_name_their_field(bad, field):
    with pytest.raises(TuneoffError) as info:
        from_dict(Experiment, experiment(adaptive=bad))
    assert info.value.field == field


def test_adaptive_needs_two_arms_and_defaults_are_sane():
    with pytest.raises(TuneoffError, match="at least two arms") as info:
        from_dict(Experiment, {**experiment(adaptive={}), "arms": [{"name": "a"}]})
    assert info.value.field == "adaptive"
    spec = from_dict(Experiment, experiment(adaptive={})).adaptive
    assert (spec.chunk, spec.alpha, spec.min_items, spec.margin, spec.seed) == (32, 0.05, 64, 0.0, 0)
    assert from_dict(Experiment, experiment()).adaptive is None
