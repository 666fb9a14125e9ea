# python -m pytest -q tests/test_data.py
"""Loaders give one `Example` form from every format; splits and subsamples are seeded and stratified."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tuneoff.data import (ColumnMapping, Example, load_dataset, load_examples, load_splits, parse_labels, split_examples,
                          stratified_order, subsample)
from tuneoff.errors import DataError, TuneoffError

GOOD = Path(__file__).parent / "fixtures" / "good"
BAD = Path(__file__).parent / "fixtures" / "bad"
SENTIMENT = {"0": "negative", "1": "positive"}


def test_prompt_completion_jsonl():
    examples = load_dataset(GOOD / "prompt_completion.jsonl")
    assert [(e.input, e.target, e.line) for e in examples] == [
        ("Translate to French: cat", "chat", 1), ("Translate to French: dog", "chien", 2),
        ("Translate to French: bird", "oiseau", 4)]  # line 3 is blank: skipped, still counted
    assert examples[0].id == "prompt_completion:1" and examples[0].source == str(GOOD / "prompt_completion.jsonl")
    assert examples[2].fields["id"] == "b1" and examples[0].context == ()


def test_json_array_lines_are_where_elements_start_and_int_targets_become_text():
    examples = load_dataset(GOOD / "array.json")
    assert [(e.input, e.target, e.line) for e in examples] == [("2 + 2 =", "4", 2), ("3 + 5 =", "8", 3),
                                                                ("10 - 7 =", "3", 8)]


def test_chat_jsonl_splits_context_input_target():
    first, multi, developer = load_dataset(GOOD / "chat.jsonl")
    assert first.context == ({"role": "system", "content": "You classify sentiment."},)
    assert (first.input, first.target) == ("I loved it", "positive")
    assert [m["role"] for m in multi.context] == ["user", "assistant"]
    assert (multi.input, multi.target) == ("What is 2+2?", "4")
    assert developer.context[0]["role"] == "system"  # OpenAI's `developer` is our `system`


def test_csv_joins_several_input_columns_and_maps_labels_and_ids():
    mapping = ColumnMapping(input="title,body", target="label", label_map={0: "negative", 1: "positive"}, id="id")
    examples = load_dataset(GOOD / "reviews.csv", mapping)
    assert examples[0].input == "title: Great\nbody: I liked it, a lot"
    assert [e.target for e in examples] == ["positive", "negative", "positive"]
    assert [e.id for e in examples] == ["r1", "r2", "r3"]
    assert [e.line for e in examples] == [2, 3, 5]  # r2 spans two physical lines
    assert examples[1].fields == {"id": "r2", "title": "Awful", "body": "Never again.\nReally.", "label": "0"}


def test_tsv_alternative_columns_take_the_first_present():
    mapping = ColumnMapping(input="sentence|content", target="label", label_map=SENTIMENT)
    examples = load_dataset(GOOD / "small.tsv", mapping)
    assert [(e.input, e.target) for e in examples] == [("a gorgeous film", "positive"), ("a dull mess", "negative")]


def test_default_mapping_reads_the_real_slices():
    sst2 = load_dataset(GOOD / "sst2_dev_60.tsv", ColumnMapping(label_map=SENTIMENT))
    assert len(sst2) == 60 and sst2[0].input == "one long string of cliches ." and sst2[0].target == "negative"
    labels = parse_labels(str(GOOD / "banking77_categories.json"))
    banking = load_dataset(GOOD / "banking77_test_60.csv", labels=labels)
    assert len(banking) == 60 and len({e.target for e in banking}) == 60
    gsm8k = load_dataset(GOOD / "gsm8k_test_20.jsonl")
    assert len(gsm8k) == 20 and gsm8k[0].target.endswith("#### 18") and gsm8k[0].input.startswith("Janet")


def test_json_keys_follow_the_mapping_too():
    examples = load_dataset(GOOD / "gsm8k_test_20.jsonl", ColumnMapping(input="answer", target="question"))
    assert examples[0].input.endswith("#### 18")


def test_delimiter_option_overrides_the_extension(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("text;label\nhello;a\n")
    assert load_dataset(path, delimiter=";")[0].target == "a"


def test_load_dataset_raises_every_error_but_not_for_warnings():
    with pytest.raises(DataError) as error:
        load_dataset(BAD / "multi_problem.jsonl")
    assert [p.line for p in error.value.problems] == [2, 3, 4, 6]
    assert "tuneoff validate" in error.value.hint
    assert len(load_dataset(BAD / "duplicate_example.jsonl")) == 4


@pytest.mark.parametrize("spec,field", [("a||b", "input"), ("a,", "input")])
def test_a_bad_mapping_names_its_field(spec, field):
    with pytest.raises(TuneoffError) as error:
        ColumnMapping(input=spec)
    assert error.value.field == field
    with pytest.raises(TuneoffError) as error:
        ColumnMapping(target=spec)
    assert error.value.field == "target"
    # several reference columns are allowed: `a,b` is a list of references
    assert ColumnMapping(target="a, b|c").target_groups() == [["a"], ["b", "c"]]


def test_a_directory_is_not_a_data_file(tmp_path):
    with pytest.raises(TuneoffError, match="directory"):
        load_examples(tmp_path)


# ---------------------------------------------------------------- splits and subsamples

def _labelled(counts: dict[str, int]) -> list[Example]:
    examples = [Example(f"{label} {i}", label, line=0) for label, n in counts.items() for i in range(n)]
    return [Example(e.input, e.target, line=i + 1, id=str(i + 1)) for i, e in enumerate(examples)]


def test_split_is_stratified_disjoint_and_in_file_order():
    examples = _labelled({"a": 60, "b": 30, "c": 10})
    splits = split_examples(examples, test=0.2, dev=0.1, seed=3)
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (70, 10, 20)
    assert Counter(e.target for e in splits.test) == {"a": 12, "b": 6, "c": 2}
    ids = [e.id for part in (splits.train, splits.dev, splits.test) for e in part]
    assert sorted(ids) == sorted(e.id for e in examples)
    assert splits.test == sorted(splits.test, key=lambda e: e.line)


def test_split_is_deterministic_per_seed():
    examples = _labelled({"a": 50, "b": 50})
    first, again = split_examples(examples, test=10, seed=7), split_examples(examples, test=10, seed=7)
    assert first == again
    assert split_examples(examples, test=10, seed=8).test != first.test


def test_stratified_order_is_fixed_for_a_seed():
    # pins the draws: a change that would move every user's split (and stored results) shows up here
    assert stratified_order(_labelled({"a": 3, "b": 3}), seed=0) == [0, 3, 2, 5, 1, 4]


def test_split_handles_classes_of_one_and_free_text():
    rare = split_examples(_labelled({"a": 20, "b": 20, "c": 1}), test=0.25, seed=0)
    assert len(rare.test) == 10
    free = [Example(f"q{i}", f"answer {i}", line=i + 1) for i in range(10)]
    assert len(split_examples(free, test=3).test) == 3


@pytest.mark.parametrize("test,dev", [(1.5, 0.0), (-1, 0), (0.6, 0.5)])
def test_impossible_splits_are_user_errors(test, dev):
    with pytest.raises(TuneoffError):
        split_examples(_labelled({"a": 5, "b": 5}), test=test, dev=dev)


def test_subsample_is_stratified_nested_and_deterministic():
    examples = _labelled({"a": 300, "b": 100})
    small, large = subsample(examples, 40, seed=1), subsample(examples, 200, seed=1)
    assert Counter(e.target for e in small) == {"a": 30, "b": 10}
    assert set(e.id for e in small) <= set(e.id for e in large)  # learning curves: 40 are among the 200
    assert small == subsample(examples, 40, seed=1) and small != subsample(examples, 40, seed=2)
    assert subsample(examples, None) == examples and subsample(examples, 10_000) == examples


def test_load_splits_from_files_or_split_off_train(tmp_path):
    mapping = ColumnMapping(label_map=SENTIMENT)
    split = load_splits(GOOD / "sst2_dev_60.tsv", mapping=mapping, fraction=0.1, seed=0)
    assert (len(split.train), len(split.dev), len(split.test)) == (48, 6, 6)
    given = load_splits(GOOD / "sst2_dev_60.tsv", test=GOOD / "small.tsv", mapping=mapping)
    assert len(given.test) == 2 and len(given.dev) == 6
    assert load_splits(None, test=GOOD / "small.tsv", mapping=mapping).train == []
    with pytest.raises(DataError) as error:
        load_splits(BAD / "ragged_row.csv", test=BAD / "empty.jsonl")
    assert [p.kind for p in error.value.problems] == ["RaggedRow", "EmptyFile"]


def test_a_missing_id_column_is_reported_once_and_a_missing_id_key_per_record(tmp_path):
    (tmp_path / "a.csv").write_text("ID,text,label\n1,a,b\n2,c,d\n")
    problems = load_examples(tmp_path / "a.csv", ColumnMapping(id="id")).problems
    assert [(p.kind, p.line, p.field) for p in problems] == [("MissingColumn", 1, "id")]
    (tmp_path / "a.jsonl").write_text('{"prompt": "a", "completion": "b"}\n'
                                      '{"prompt": "c", "completion": "d", "id": 7}\n')
    result = load_examples(tmp_path / "a.jsonl", ColumnMapping(id="id"))
    assert [(p.kind, p.line) for p in result.problems] == [("MissingField", 1)]
    assert [e.id for e in result.examples] == ["7"]


# ---------------------------------------------------------------- JSON arrays, however laid out

ONE_LINE = '[{"prompt": "a", "completion": "b"}, {"prompt": "c", "completion": "d"}]'


def test_a_one_line_json_array_loads_every_record_with_distinct_ids(tmp_path):
    path = tmp_path / "tuning.json"
    path.write_text(ONE_LINE + "\n")  # the instruction-tuning example users copy
    result = load_examples(path)
    assert result.problems == []
    assert [(e.input, e.target, e.line, e.record) for e in result.examples] == [("a", "b", 1, 1), ("c", "d", 1, 2)]
    assert [e.id for e in result.examples] == ["tuning#1", "tuning#2"]


def test_array_ids_do_not_depend_on_the_layout(tmp_path):
    pretty = tmp_path / "pretty" / "tuning.json"
    pretty.parent.mkdir()
    pretty.write_text('[\n  {"prompt": "a", "completion": "b"},\n\n  {"prompt": "c",\n   "completion": "d"},'
                      ' {"prompt": "e", "completion": "f"}\n]\n')  # multi-line and mixed
    (tmp_path / "tuning.json").write_text(ONE_LINE[:-1] + ', {"prompt": "e", "completion": "f"}]')
    spread, flat = load_dataset(pretty), load_dataset(tmp_path / "tuning.json")
    assert [e.line for e in spread] == [2, 4, 5] and [e.line for e in flat] == [1, 1, 1]
    assert [e.id for e in spread] == [e.id for e in flat] == ["tuning#1", "tuning#2", "tuning#3"]


def test_an_error_in_the_second_record_of_a_one_line_array_names_line_1_and_the_record(tmp_path):
    path = tmp_path / "tuning.json"
    path.write_text('[{"prompt": "a", "completion": "b"}, {"prompt": "c", "completion": ""}]')
    result = load_examples(path)
    [problem] = result.problems
    assert (problem.kind, problem.line, problem.record, problem.field) == ("EmptyField", 1, 2, "completion")
    assert problem.render() == f"{path}:1: record 2: EmptyField [completion]: empty"
    assert [e.input for e in result.examples] == ["a"]
    with pytest.raises(DataError) as error:
        load_dataset(path)
    assert error.value.line == 1 and "record 2: EmptyField" in error.value.message


def test_cross_record_problems_in_a_one_line_array_point_at_records(tmp_path):
    path = tmp_path / "tuning.json"
    path.write_text('[{"prompt": "a", "completion": "b"}, {"prompt": "a", "completion": "x"}, {"prompt": "a",'
                    ' "completion": "b", "id": "k"}, {"prompt": "z", "completion": "y", "id": "k"}]')
    problems = load_examples(path, ColumnMapping(id="id")).problems
    assert [(p.kind, p.line, p.record) for p in problems] == [
        ("MissingField", 1, 1), ("MissingField", 1, 2), ("DuplicateId", 1, 4)]
    assert "id 'k' is already used on record 3 (line 1)" in problems[2].message
    problems = load_examples(path).problems
    assert [(p.kind, p.record) for p in problems] == [("ConflictingTarget", 2), ("DuplicateExample", 3)]
    assert "same input as record 1 (line 1)" in problems[0].message


def test_a_syntax_error_inside_a_one_line_array_names_the_record(tmp_path):
    path = tmp_path / "tuning.json"
    path.write_text('[{"prompt": "a", "completion": "b"}, {"prompt": "c", completion: "d"}]')
    [problem] = load_examples(path).problems
    assert (problem.kind, problem.line, problem.record) == ("InvalidJSON", 1, 2)
