"""Output constraints (JSON Schema, regex, word limit), field-level scores, schema-file errors, and
constrained decoding on a tiny random model: whatever the weights, the reply validates.

    OMP_NUM_THREADS=1 python -m pytest -q tests/test_structured.py
"""

from __future__ import annotations

import json

import pytest

from tuneoff.errors import TuneoffError
from tuneoff.structured import OutputFormat, corpus_field_scores, field_scores, load_schema

SCHEMA = {"type": "object", "properties": {"topic": {"type": "string", "maxLength": 12},
                                           "summary": {"type": "string", "maxLength": 30}},
          "required": ["topic", "summary"], "additionalProperties": False}


def test_violations_are_named_per_constraint():
    fmt = OutputFormat(json_schema=SCHEMA, max_words=6)
    assert fmt.violations('{"topic": "job", "summary": "an interview"}') == []
    assert fmt.violations('```json\n{"topic": "job", "summary": "x"}\n```') == []
    assert fmt.violations("") == ["empty"]
    assert fmt.violations("topic: job") == ["json"]
    assert fmt.violations('{"topic": "job"}') == ["schema:(root)"]
    assert fmt.violations('{"topic": 3, "summary": "one two three four five six"}') == ["max_words", "schema:topic"]
    assert OutputFormat(regex=r"[A-Z][a-z]+").violations("Paris.") == ["regex"]


def test_field_scores_per_leaf_and_per_field():
    target = '{"topic": "Job Interview", "summary": "#Person1# interviews #Person2#."}'
    s = field_scores('{"topic": "job  interview", "summary": "something else", "extra": 1}', target)
    assert (s.matched, s.predicted, s.expected) == (1, 3, 2)
    assert s.per_field == {"topic": True, "summary": False}
    assert s.precision == pytest.approx(1 / 3) and s.recall == 0.5 and s.f1 == pytest.approx(0.4)
    bad = field_scores("not json", target)
    assert not bad.parsed and bad.f1 == 0.0
    corpus = corpus_field_scores(['{"topic": "job interview", "summary": "x"}', "nope"], [target, target])
    assert corpus["field:topic"] == 0.5 and corpus["field_recall"] == 0.25 and corpus["field_precision"] == 0.5


def test_a_bad_schema_file_names_file_line_and_field(tmp_path):
    path = tmp_path / "schema.json"
    path.write_text('{\n  "type": "object",\n  "properties": {\n    "topic": {"type": "strin"}\n  }\n}\n')
    with pytest.raises(TuneoffError) as err:
        load_schema(path)
    assert err.value.file == str(path) and err.value.line == 4 and err.value.field == "properties.topic.type"
    path.write_text('{\n  "type": "object",\n  "properties": {\n')
    with pytest.raises(TuneoffError, match="not valid JSON") as err:
        load_schema(path)
    assert err.value.line == 4
    yaml_path = tmp_path / "schema.yaml"
    yaml_path.write_text("type: object\nrequired: [topic\n")
    with pytest.raises(TuneoffError, match="not valid YAML"):
        load_schema(yaml_path)
    path.write_text(json.dumps(SCHEMA))
    assert load_schema(path) == SCHEMA
    with pytest.raises(TuneoffError, match="regular expression"):
        OutputFormat(regex="(")
    with pytest.raises(TuneoffError, match="unknown key"):
        OutputFormat.from_dict({"shema": "x.json"})


def test_constrained_decoding_on_a_random_model_always_validates(tiny_llama):
    import jsonschema

    from tuneoff.models import GenerationConfig
    from tuneoff.models.base import BackendInfo
    from tuneoff.models.local import TransformersBackend

    model, tok = tiny_llama
    backend = TransformersBackend(model, tok, BackendInfo(name="tiny"), batch_size=4)
    prompts = [[{"role": "user", "content": text}] for text in
               ["the movie was great", "a dull boring film", "what is the capital of france", "card payment",
                "think step by step", "0 1 2 3"]]
    free = backend.generate(prompts, GenerationConfig(max_new_tokens=40))
    constrained = backend.generate(prompts, GenerationConfig(max_new_tokens=200, json_schema=json.dumps(SCHEMA)))
    fmt = OutputFormat(json_schema=SCHEMA)
    assert all(fmt.violations(c.text) for c in free)  # the same model unconstrained writes no valid JSON
    for c in constrained:
        jsonschema.validate(json.loads(c.text), SCHEMA)
        assert c.finish_reason == "stop"
