"""Experiment and task YAML: wrong types, unknown keys, alias bombs, huge numbers, bad bytes — a
`TuneoffError` naming the file (and a line where there is one), never a traceback or a hang."""

from __future__ import annotations

import copy

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tuneoff.config.experiment import load_experiment
from tuneoff.config.specs import load_spec
from tuneoff.config.task import TaskSpec
from tuneoff.errors import TuneoffError

from .helpers import TALLY, no_hang

BASE = {
    "version": 1, "name": "tiny", "model": "embedded:smollm2-135m-instruct",
    "task": {"name": "t", "train": "train.jsonl", "labels": ["a", "b"]},
    "arms": [{"name": "zero", "prompt": {"shots": 0}},
             {"name": "few", "prompt": {"shots": 1, "temperature": 0.0}},
             {"name": "tune", "finetune": {"method": "lora", "learning_rate": 1e-3, "epochs": 1}}],
    "curves": {"shots": [0, 1], "n_train": [2]},
    "consistency": {"arms": ["zero"], "seeds": [1, 2], "temperature": 0.7},
}


def load(tmp_path, spec_or_text, name="exp.yaml"):
    path = tmp_path / name
    if isinstance(spec_or_text, bytes):
        path.write_bytes(spec_or_text)
    else:
        path.write_text(spec_or_text if isinstance(spec_or_text, str) else yaml.safe_dump(spec_or_text))
    TALLY["inputs"] += 1
    with no_hang(20):
        return load_experiment(path)


def refused(tmp_path, spec_or_text, match: str, field: str | None = None) -> TuneoffError:
    with pytest.raises(TuneoffError, match=match) as info:
        load(tmp_path, spec_or_text)
    assert info.value.file and info.value.file.endswith("exp.yaml")
    if field:
        assert info.value.field == field and info.value.line is not None
    return info.value


def with_(path: str, value):
    spec = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = spec
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is _DROP:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return spec


_DROP = object()


def test_the_base_experiment_loads(tmp_path):
    assert load(tmp_path, BASE).name == "tiny"


def test_alias_bomb_is_refused_in_a_bounded_time(tmp_path):
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    text = "\n".join(lines) + "\n" + yaml.safe_dump(with_("arms.0.prompt", {"demos": "PLACEHOLDER"})) \
        .replace("PLACEHOLDER", "*a8")
    refused(tmp_path, text, "expands to more than")


def test_recursive_alias_is_refused(tmp_path):
    refused(tmp_path, "name: &x [*x]\n", "refers to a value that contains it")


def test_duplicate_keys_are_refused_at_the_second_one(tmp_path):
    text = yaml.safe_dump(BASE) + "name: other\n"
    err = refused(tmp_path, text, "given twice")
    assert err.line == text.count("\n")


def test_non_utf8_experiment_names_its_line(tmp_path):
    text = yaml.safe_dump(BASE).encode() + b"# caf\xe9\n"
    err = refused(tmp_path, text, "not UTF-8")
    assert err.line == text.count(b"\n")


@pytest.mark.parametrize("path,value,match,field", [
    ("arms.2.finetune.learning_rate", float("nan"), "finite", "arms[2].finetune.learning_rate"),
    ("arms.1.prompt.temperature", float("inf"), "finite", "arms[1].prompt.temperature"),
    ("consistency.temperature", float("nan"), "finite", "consistency.temperature"),
    ("consistency.temperature", -1.0, "must be > 0", "consistency.temperature"),
    ("batch_size", 0, "must be >= 1", "batch_size"),
    ("batch_size", 10**30, "out of range", "batch_size"),
    ("consistency.arms", ["zero", "ghost"], "no arm 'ghost'", "consistency.arms[1]"),
    ("curves.prompt_arm", "ghost", "not a prompt arm", "curves.prompt_arm"),
    ("curves.finetune_arm", "zero", "not a finetune arm", "curves.finetune_arm"),
    ("arms", [{"name": "zero", "prompt": {}}, {"name": "tune", "finetune": {}}], "needs a prompt arm with shots",
     "curves.shots"),
    ("output", "runs/{nam}", "unknown placeholder", "output"),
    ("output", "runs/{name.__class__}", "unknown placeholder", "output"),
    ("output", "runs/{name:>999999999}", "unknown placeholder", "output"),
    ("output", "runs/{", "bad braces", "output"),
    ("name", "../../x", "cannot name a folder", "name"),
    ("name", "..", "cannot name a folder", "name"),
])
def test_bad_values_are_caught_at_load_with_file_line_field(tmp_path, path, value, match, field):
    refused(tmp_path, with_(path, value), match, field)


def test_curve_without_any_finetune_arm_is_refused(tmp_path):
    spec = with_("arms", [{"name": "few", "prompt": {"shots": 1}}])
    del spec["consistency"]
    refused(tmp_path, spec, "needs a finetune arm", "curves.n_train")


KEYS = ["version", "name", "model", "task", "arms", "batch_size", "curves", "consistency", "output", "dtype",
        "engine", "prices", "constraints", "flexibility", "nmae", "arm"]
VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                      max_leaves=12)


@pytest.mark.fuzz
@given(changes=st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=3),
       arm_changes=st.dictionaries(st.sampled_from(["name", "prompt", "finetune", "finetuned", "model", "x"]), VALUES,
                                   max_size=2))
def test_fuzzed_experiments_load_or_fail_cleanly(tmp_path_factory, changes, arm_changes):
    spec = copy.deepcopy(BASE)
    spec.update(changes)
    if isinstance(spec.get("arms"), list) and spec["arms"] and isinstance(spec["arms"][0], dict):
        spec["arms"][0].update(arm_changes)
    tmp = tmp_path_factory.mktemp("exp")
    try:
        load(tmp, yaml.safe_dump(spec, allow_unicode=True))
    except TuneoffError as exc:
        assert exc.file and str(exc)


@pytest.mark.fuzz
@given(text=st.text(max_size=300) | st.binary(max_size=300))
def test_fuzzed_yaml_text_loads_or_fails_cleanly(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("yaml") / "task.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    TALLY["inputs"] += 1
    try:
        with no_hang(20):
            load_spec(TaskSpec, path, base_dir=str(path.parent))
    except TuneoffError as exc:
        assert exc.file == str(path)


def test_a_template_with_an_unknown_variable_fails_at_load(tmp_path):
    """It used to fail only when rendered: after the fine-tune arms had trained."""
    err = refused(tmp_path, with_("arms.0.prompt", {"template": "Review: {{ inptu }}"}), "unknown variable")
    assert err.field == "arms[0].prompt.template" and err.line is not None


def test_templates_using_real_data_columns_still_load(tmp_path):
    spec = with_("arms.1.prompt", {"shots": 2, "template": "{{ fields.title }}: {{ input }} ({{ labels|join('/') }})"})
    assert load(tmp_path, spec).arms[1].prompt["shots"] == 2


def test_a_huge_yaml_is_refused(tmp_path):
    refused(tmp_path, "name: x\n# " + "a" * 3_000_000 + "\n", "larger than")


def test_a_deeply_nested_yaml_is_refused(tmp_path):
    refused(tmp_path, "name: " + "[" * 20_000 + "]" * 20_000 + "\n", "nested too deeply|invalid YAML")
