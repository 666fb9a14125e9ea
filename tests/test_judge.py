"""LLM-as-judge on scripted judges: both orders are asked, a position flip is a tie, a weak judge looks
weak in its reliability figures, calls are cached and resumable, human ratings are checked by id.

    OMP_NUM_THREADS=1 python -m pytest -q tests/test_judge.py
"""

from __future__ import annotations

import json
import random
import re

import pytest

from tuneoff.config.judge import JudgeSpec
from tuneoff.errors import TuneoffError
from tuneoff.evaluate.judge import Output, judge_pass
from tuneoff.evaluate.judge_stats import combine_orders
from tuneoff.models.base import BackendInfo, Completion
from tuneoff.store import Store

QUALITY = {"great summary": 5, "fair summary": 3, "poor summary": 1}


def outputs(n: int = 6) -> dict[str, list[Output]]:
    """Three arms whose outputs have a known quality; the metric agrees with it."""
    arms = {"good": "great summary", "mid": "fair summary", "bad": "poor summary"}
    return {arm: [Output(f"t{i}", arm, f"dialogue {i}", f"reference {i}", f"{text} {i}",
                         metric=QUALITY[text] / 5) for i in range(n)] for arm, text in arms.items()}


class ScriptedJudge:
    """A judge backend whose verdict is a function of the responses it is shown (and of sampling)."""

    def __init__(self, policy, fail_after: int | None = None):
        self.info = BackendInfo(name="judge")
        self.policy, self.fail_after, self.prompts = policy, fail_after, []

    def render(self, messages, add_generation_prompt=True) -> str:
        return "\n".join(f"<{m['role']}>{m['content']}" for m in messages)

    def generate(self, chats, config) -> list[Completion]:
        out = []
        for chat in chats:
            if self.fail_after is not None and len(self.prompts) >= self.fail_after:
                raise RuntimeError("judge went away")
            text = chat[-1]["content"]
            self.prompts.append(text)
            shown = re.findall(r"Response(?: [AB])?:\n(\w+) summary", text)
            out.append(Completion(self.policy(shown, config), tokens_in=100, tokens_out=2, seconds=0.5, batch_size=1))
        return out


def quality(word: str) -> int:
    return QUALITY[f"{word} summary"]


def fair_pairwise(shown, config):
    a, b = (quality(w) for w in shown)
    return "A" if a > b else "B" if b > a else "TIE"


def test_pairwise_asks_both_orders_and_a_fair_judge_agrees_with_the_metric(tmp_path):
    judge = ScriptedJudge(fair_pairwise)
    spec = JudgeSpec(model="x", mode="pairwise", items=4, repeat_items=2)
    report = judge_pass(judge, spec, outputs(4), Store(tmp_path / "s.sqlite"))
    # every pair of arms, every item, in both orders: the same two responses swap positions
    assert len(judge.prompts) == 3 * 4 * 2 + 3 * 2
    first = [re.findall(r"Response [AB]:\n(\w+)", p) for p in judge.prompts[:24]]
    assert all(first[i] == first[i + 1][::-1] for i in range(0, 24, 2))
    assert report.scores["good"]["value"] == 1.0 and report.scores["bad"]["value"] == 0.0
    r = report.reliability
    assert r["position_flip_rate"]["value"] == 0.0 and r["self_agreement"]["value"] == 1.0
    assert r["off_format_rate"]["value"] == 0.0 and r["position_flip_rate"]["n"] == 12
    assert r["metric_agreement"]["value"] == 1.0 and r["arm_rank_tau"] == pytest.approx(1.0)


def test_a_judge_that_always_picks_the_first_position_flips_every_pair_and_scores_ties(tmp_path):
    report = judge_pass(ScriptedJudge(lambda shown, config: "A"), JudgeSpec(model="x", mode="pairwise", items=4),
                        outputs(4), Store(tmp_path / "s.sqlite"))
    flips = report.reliability["position_flip_rate"]
    assert flips["value"] == 1.0 and flips["by_arm"] == {"good": 1.0, "mid": 1.0, "bad": 1.0}
    assert {a: s["value"] for a, s in report.scores.items()} == {"good": 0.5, "mid": 0.5, "bad": 0.5}
    assert report.reliability["metric_agreement"]["value"] == 0.5  # all ties: no better than a coin


def test_a_flip_is_a_tie_and_a_lean_is_not_a_flip():
    assert combine_orders("first", "first") == ("tie", True)
    assert combine_orders("first", "second") == ("A", False)
    assert combine_orders("second", "first") == ("B", False)
    assert combine_orders("first", "tie") == ("tie", False)
    assert combine_orders(None, "first") == (None, False)


def test_a_guessing_judge_looks_weak_pointwise(tmp_path):
    greedy, sampled = random.Random(0), random.Random(1)

    def guess(shown, config):  # a grade unrelated to the response, greedy or sampled
        return str((sampled if config.temperature > 0 else greedy).randint(1, 5))

    report = judge_pass(ScriptedJudge(guess), JudgeSpec(model="x", items=30, repeat_items=30),
                        outputs(30), Store(tmp_path / "s.sqlite"))
    r = report.reliability
    assert r["self_agreement"]["value"] < 0.5
    assert r["position_flip_rate"] is None
    fair = judge_pass(ScriptedJudge(lambda shown, config: str(quality(shown[0]))),
                      JudgeSpec(model="x", items=30, repeat_items=30), outputs(30), Store(tmp_path / "t.sqlite"))
    assert fair.reliability["self_agreement"]["value"] == 1.0 and fair.reliability["metric_agreement"]["value"] == 1.0
    assert r["metric_agreement"]["value"] < fair.reliability["metric_agreement"]["value"] - 0.2


def test_off_format_verdicts_are_retried_a_bounded_number_of_times_and_counted(tmp_path):
    judge = ScriptedJudge(lambda shown, config: "I think it is quite nice")
    report = judge_pass(judge, JudgeSpec(model="x", items=3, retries=2, repeat_items=0), outputs(3),
                        Store(tmp_path / "s.sqlite"))
    assert len(judge.prompts) == 9 * 3
    assert report.reliability["off_format_rate"]["value"] == 1.0 and report.scores["good"]["value"] is None


def test_calls_are_cached_resumable_and_priced_apart(tmp_path, monkeypatch):
    from tuneoff.evaluate.judge import Caller

    monkeypatch.setattr(Caller, "chunk", 4)
    store = Store(tmp_path / "s.sqlite")
    spec = JudgeSpec(model="x", items=4, repeat_items=0, input_per_1k_tokens=1.0, output_per_1k_tokens=10.0)
    policy = lambda s, c: str(quality(s[0]))  # noqa: E731
    with pytest.raises(RuntimeError):  # dies in its second chunk: the first chunk's 4 calls are stored
        judge_pass(ScriptedJudge(policy, fail_after=5), spec, outputs(4), store)
    judge = ScriptedJudge(policy)
    report = judge_pass(judge, spec, outputs(4), store)
    assert len(judge.prompts) == 8 and report.cost.new_calls == 8 and report.cost.calls == 12
    again = ScriptedJudge(policy)
    report2 = judge_pass(again, spec, outputs(4), store)
    assert again.prompts == [] and report2.cost.new_calls == 0 and report2.cost.calls == 12
    assert report2.cost.usd == pytest.approx(12 * (100 / 1000 * 1.0 + 2 / 1000 * 10.0))
    assert report2.run_id == report.run_id
    stored = store.metrics(report.run_id)
    assert stored["judge_score:good"]["value"] == 5.0 and stored["judge_cost_usd"]["value"] == report2.cost.usd
    rows = store.predictions(report.run_id)
    assert len(rows) == 12 and json.loads(rows[0]["extra_json"])["arm"] == "good"


def test_human_ratings_agreement_and_ids_that_do_not_match(tmp_path):
    path = tmp_path / "ratings.jsonl"
    rows = [{"id": f"t{i}", "arm": arm, "rating": {"good": 5, "mid": 3, "bad": 2}[arm]}
            for i in range(4) for arm in ("good", "mid", "bad")]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    spec = JudgeSpec(model="x", items=4, repeat_items=0, ratings=str(path))
    report = judge_pass(ScriptedJudge(lambda s, c: str(quality(s[0]))), spec, outputs(4), Store(tmp_path / "s.sqlite"))
    human = report.reliability["human"]
    assert human["n"] == 12 and human["spearman"] == pytest.approx(1.0) and human["value"] == 1.0
    path.write_text(json.dumps(rows[0]) + "\n" + json.dumps({**rows[1], "id": "t99"}))
    with pytest.raises(TuneoffError) as err:
        judge_pass(ScriptedJudge(lambda s, c: "3"), spec, outputs(4), Store(tmp_path / "u.sqlite"))
    assert err.value.line == 2 and err.value.field == "id" and "t99" in err.value.message


def test_judge_spec_errors_name_the_field():
    with pytest.raises(TuneoffError, match="judge.mode"):
        JudgeSpec(model="x", mode="listwise")
    with pytest.raises(TuneoffError, match="judge.scale"):
        JudgeSpec(model="x", scale="1-10")
    with pytest.raises(TuneoffError, match="judge.pairs"):
        JudgeSpec(model="x", pairs=[["a", "a"]])
    with pytest.raises(TuneoffError, match="no arm named 'lorra'"):
        JudgeSpec(model="x", pairs=[["lora", "lorra"]]).check_arms(["lora", "zero-shot"])
