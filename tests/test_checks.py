"""Grounding and output constraints inside an evaluation: per-arm rates and field scores stored with
the run, per-item flags on the stored predictions, and a constrained arm on a tiny random model whose
replies all validate while the same arm unconstrained writes no valid JSON.

    OMP_NUM_THREADS=1 python -m pytest -q tests/test_checks.py
"""

from __future__ import annotations

import json

import pytest

from tuneoff.data import Example
from tuneoff.errors import TuneoffError
from tuneoff.evaluate import evaluate
from tuneoff.models.base import BackendInfo, Completion
from tuneoff.prompting import PromptArm, TaskContext
from tuneoff.store import Store
from tuneoff.structured import OutputFormat

SCHEMA = {"type": "object", "properties": {"topic": {"type": "string", "maxLength": 12},
                                           "summary": {"type": "string", "maxLength": 30}},
          "required": ["topic", "summary"], "additionalProperties": False}


class Replies:
    """A backend answering each item from a script keyed by the item's dialogue."""

    def __init__(self, script: dict[str, str]):
        self.info, self.script = BackendInfo(name="scripted"), script

    def render(self, messages, add_generation_prompt=True) -> str:
        return "\n".join(m["content"] for m in messages)

    def generate(self, chats, config):
        return [Completion(next(v for k, v in self.script.items() if k in c[-1]["content"]), 10, 5, 0.1)
                for c in chats]

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def test_grounding_rates_and_item_flags_are_stored(tmp_path):
    items = [Example("#Person1#: Tom pays 45 dollars.", "#Person1# pays 45 dollars.", id="a"),
             Example("#Person1#: the train leaves at noon.", "The train leaves at noon.", id="b")]
    backend = Replies({"Tom pays": "#Person1# Tom pays 45 dollars.", "train leaves": "Mary says it leaves at 9."})
    ctx = TaskContext(name="dialogues", metric="chrf", grounding=True)
    store = Store(tmp_path / "s.sqlite")
    result = evaluate(backend, PromptArm(name="plain"), items, ctx, store=store)
    m = result.metrics
    assert m["unsupported_content_rate"].value == 0.5
    assert m["unsupported_unit_share"].value == pytest.approx(2 / 5)  # #Person1#, Tom, 45 | Mary, 9
    assert m["unreferenced_content_rate"].value == 1.0  # "Tom" is in no reference
    extras = [json.loads(r["extra_json"]) for r in store.predictions(result.run_id)]
    assert [e["ungrounded"] for e in extras] == [False, True] and extras[1]["unsupported"] == ["9", "Mary"]


def test_output_constraints_and_field_scores(tmp_path):
    target = json.dumps({"topic": "travel", "summary": "#Person1# asks when the train leaves today."})
    items = [Example("d1 trip", target, id="a"), Example("d2 trip", target, id="b"), Example("d3 trip", target, id="c")]
    backend = Replies({"d1": '{"topic": "Travel", "summary": "#Person1# asks when the train leaves."}',
                       "d2": '{"topic": "work"}', "d3": "travel: the train"})
    ctx = TaskContext(name="json", metric="exact_match", output=OutputFormat(json_schema=SCHEMA))
    store = Store(tmp_path / "s.sqlite")
    m = evaluate(backend, PromptArm(name="plain"), items, ctx, store=store).metrics
    assert m["constraint_violation_rate"].value == pytest.approx(1.0)  # maxLength, required, not JSON
    assert m["schema_violation_rate"].value == pytest.approx(1.0)
    assert m["field:topic"].value == pytest.approx(1 / 3) and m["field:summary"].value == 0.0
    assert m["field_recall"].value == pytest.approx(1 / 6) and m["field_precision"].value == pytest.approx(1 / 3)
    assert 0.5 < m["field_rougeL:summary"].value / (1 / 3) <= 1.0  # one of three summaries close, two missing
    assert "unsupported_content_rate" not in m  # grounding is off unless the task asks (TaskContext default)


def test_constrained_arm_always_validates_on_a_random_model(tmp_path, tiny_llama):
    from tuneoff.models.local import TransformersBackend

    model, tok = tiny_llama
    backend = TransformersBackend(model, tok, BackendInfo(name="tiny"), batch_size=4)
    ctx = TaskContext(name="json", metric="exact_match", output=OutputFormat(json_schema=SCHEMA))
    items = [Example(text, json.dumps({"topic": "x", "summary": "y"}), id=str(i)) for i, text in
             enumerate(["the movie was great", "a dull boring film", "card payment", "the answer is 42"])]
    store = Store(tmp_path / "s.sqlite")
    plain = evaluate(backend, PromptArm(name="plain", max_new_tokens=40), items, ctx, store=store).metrics
    fixed = evaluate(backend, PromptArm(name="constrained", constrained=True, max_new_tokens=200), items, ctx,
                     store=store).metrics
    assert plain["schema_violation_rate"].value == 1.0
    assert fixed["schema_violation_rate"].value == 0.0 and fixed["constraint_violation_rate"].value == 0.0


def test_constrained_needs_a_schema_and_generation():
    with pytest.raises(TuneoffError, match="constrained"):
        PromptArm(name="x", constrained=True, mode="score")
    from tuneoff.evaluate.engine import constrained_schema

    with pytest.raises(TuneoffError, match="output schema"):
        constrained_schema(PromptArm(name="x", constrained=True), TaskContext(name="t", metric="exact_match"))


def test_data_to_text_slot_coverage_is_measured_per_arm(tmp_path):
    items = [Example("name[The Eagle], eatType[coffee shop], priceRange[cheap]", "x", id="a"),
             Example("name[Zizzi], eatType[pub], priceRange[expensive]", "y", id="b")]
    backend = Replies({"The Eagle": "The Eagle is an expensive coffee shop.", "Zizzi": "Zizzi is a pub."})
    ctx = TaskContext(name="e2e", metric="chrf", grounding=True)
    store = Store(tmp_path / "s.sqlite")
    result = evaluate(backend, PromptArm(name="plain"), items, ctx, store=store)
    m = result.metrics
    assert m["slot_coverage"].value == pytest.approx(4 / 6)
    assert m["slot_contradicted_share"].value == pytest.approx(1 / 6)  # "expensive" for cheap
    assert m["slot_missing_share"].value == pytest.approx(1 / 6)      # Zizzi's price range
    extras = [json.loads(r["extra_json"]) for r in store.predictions(result.run_id)]
    assert extras[0]["slots_contradicted"] == ["priceRange"] and extras[1]["slots_missing"] == ["priceRange"]


def test_a_dialogue_is_not_fields_and_a_json_reply_is_grounded_on_its_values():
    from tuneoff.evaluate.checks import stated_text
    from tuneoff.grounding import ground, parse_slots

    assert parse_slots("#Person1#: hi\n#Person2#: hello\n#Person1#: bye") == {}
    reply = '{"topic": "travel", "summary": "#Person1# meets Tom at 10:30."}'
    assert stated_text(reply) == "travel\n#Person1# meets Tom at 10:30."
    g = ground(stated_text(reply), "#Person1#: see you at 10:30, Tom.")
    assert not g.ungrounded  # the keys and the JSON quotes are not content
