# python -m pytest -q tests/test_validation.py
"""Every problem kind on a small bad file, at the right line; summaries; `tuneoff validate` and its printing."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from typer.testing import CliRunner

from tuneoff import cli
from tuneoff.terminal import print_validation
from tuneoff.data import (ColumnMapping, Example, check_lengths, lengths_of, load_examples, looks_like_labels,
                          parse_label_map, parse_labels, summarize, validate_file)
from tuneoff.errors import Kind, TuneoffError

FIXTURES = Path(__file__).parent / "fixtures"
BAD = FIXTURES / "bad"
GOOD = FIXTURES / "good"
SENTIMENT = ColumnMapping(label_map={"0": "negative", "1": "positive"})


class FakeTokenizer:
    """Called like a Hugging Face tokenizer; one token per whitespace-separated word."""

    def __call__(self, texts, add_special_tokens=True):
        return {"input_ids": [text.split() for text in texts]}


# file, expected kind, expected line, field (None: unchecked), load options
BAD_FILES = [
    ("empty.jsonl", "EmptyFile", 0, None, {}),
    ("only_whitespace.jsonl", "EmptyFile", 0, None, {}),
    ("empty_array.json", "EmptyFile", 0, None, {}),
    ("header_only.csv", "EmptyFile", 0, None, {}),
    ("utf16.jsonl", "Encoding", 1, None, {}),
    ("nul_bytes.jsonl", "Encoding", 2, None, {}),
    ("latin1.csv", "Encoding", 3, None, {}),
    ("bom.jsonl", "ByteOrderMark", 1, None, {}),
    ("single_quotes.jsonl", "InvalidJSON", 3, None, {}),
    ("truncated_line.jsonl", "InvalidJSON", 2, None, {}),
    ("one_object.json", "InvalidJSON", 1, None, {}),
    ("array_trailing_comma.json", "InvalidJSON", 4, None, {}),
    ("array_unclosed.json", "InvalidJSON", 4, None, {}),
    ("array_bad_element.json", "InvalidJSON", 4, None, {}),
    ("array_extra_text.json", "InvalidJSON", 3, None, {}),
    ("not_object.jsonl", "NotAnObject", 2, None, {}),
    ("array_not_object.json", "NotAnObject", 7, None, {}),
    ("chat_message_not_object.jsonl", "NotAnObject", 2, "messages[0]", {}),
    ("missing_completion.jsonl", "MissingField", 2, "completion", {}),
    ("chat_missing_content.jsonl", "MissingField", 1, "messages[0].content", {}),
    ("chat_messages_not_list.jsonl", "WrongType", 2, "messages", {}),
    ("empty_prompt.jsonl", "EmptyField", 3, "prompt", {}),
    ("whitespace_completion.json", "EmptyField", 7, "completion", {}),
    ("chat_empty_messages.jsonl", "EmptyField", 2, "messages", {}),
    ("empty_target.tsv", "EmptyField", 3, "label", {}),
    ("null_completion.jsonl", "NonStringContent", 2, "completion", {}),
    ("chat_number_content.jsonl", "NonStringContent", 2, "messages[0].content", {}),
    ("chat_unknown_role.jsonl", "UnknownRole", 2, "messages[0].role", {}),
    ("chat_ends_with_user.jsonl", "NoAssistantTurn", 3, "messages[2]", {}),
    ("chat_no_user.jsonl", "NoUserTurn", 1, None, {}),
    ("label_outside_set.csv", "LabelOutsideSet", 4, "target", {"labels": ["positive", "negative"]}),
    ("label_map_outside.tsv", "LabelOutsideSet", 4, "label", {"mapping": SENTIMENT}),
    ("duplicate_id.csv", "DuplicateId", 4, "id", {"mapping": ColumnMapping(id="id")}),
    ("duplicate_example.jsonl", "DuplicateExample", 4, None, {}),
    ("conflicting_target.jsonl", "ConflictingTarget", 3, "target", {}),
    ("missing_column.csv", "MissingColumn", 1, "prompt", {}),
    ("duplicate_column.csv", "DuplicateColumn", 1, "text", {}),
    ("ragged_row.csv", "RaggedRow", 4, None, {}),
    ("multiline_then_ragged.csv", "RaggedRow", 5, None, {}),
    ("unclosed_quote.csv", "InvalidCSV", 3, None, {}),
    ("too_deep.jsonl", "TooLarge", 2, None, {}),
]


@pytest.mark.parametrize("name,kind,line,field,options", BAD_FILES, ids=[row[0] for row in BAD_FILES])
def test_bad_file_reports_its_problem_at_its_line(name, kind, line, field, options):
    problems = load_examples(BAD / name, **options).problems
    assert [(p.kind, p.line) for p in problems] == [(kind, line)], [p.render() for p in problems]
    if field is not None:
        assert problems[0].field == field
    assert problems[0].file == str(BAD / name)


def test_every_bad_fixture_is_in_the_table_and_every_kind_is_tested():
    assert sorted(p.name for p in BAD.iterdir()) == sorted([row[0] for row in BAD_FILES] + ["multi_problem.jsonl"])
    tested = {row[1] for row in BAD_FILES} | {"TooLong"}  # TooLong needs a tokenizer: tested below
    assert tested == {kind.name for kind in Kind}


def test_every_problem_is_reported_not_only_the_first():
    problems = load_examples(BAD / "multi_problem.jsonl").problems
    assert [(p.kind, p.line) for p in problems] == [
        ("InvalidJSON", 2), ("NotAnObject", 3), ("MissingField", 4), ("DuplicateExample", 5), ("EmptyField", 6)]
    assert "line 1" in problems[3].message


def test_warnings_do_not_keep_examples_out():
    result = load_examples(BAD / "bom.jsonl")
    assert [e.input for e in result.examples] == ["hi", "bye"]
    assert result.errors == [] and [p.kind for p in result.warnings] == ["ByteOrderMark"]


def test_messages_name_what_to_fix():
    missing = load_examples(BAD / "missing_column.csv").problems[0]
    assert "did you mean 'txt'" in missing.message
    assert "'2'" in load_examples(BAD / "label_map_outside.tsv", SENTIMENT).problems[0].message
    assert load_examples(BAD / "chat_unknown_role.jsonl").problems[0].render().startswith(
        f"{BAD / 'chat_unknown_role.jsonl'}:2: UnknownRole [messages[0].role]: unknown role \"bot\"")


def test_too_long_uses_the_tokenizer_and_names_the_line():
    examples = load_examples(GOOD / "prompt_completion.jsonl").examples  # 4 + 1 words each
    lengths, targets = lengths_of(examples, FakeTokenizer())
    assert lengths == [5, 5, 5] and targets == [1, 1, 1]
    long = [Example("one two three four five six", "x", line=9)]
    problems = check_lengths(long, lengths_of(long, FakeTokenizer())[0], max_tokens=5, file="f.jsonl")
    assert [(p.kind, p.line) for p in problems] == [("TooLong", 9)]
    assert "7 tokens" in problems[0].message


def test_lengths_without_a_tokenizer_count_characters_and_include_context():
    chat = load_examples(GOOD / "chat.jsonl").examples[0]
    (total,), (target,) = lengths_of([chat])
    assert target == len("positive")
    assert total == len("You classify sentiment.\nI loved it") + target


def test_summary_counts_labels_and_lengths():
    examples = load_examples(GOOD / "sst2_dev_60.tsv", SENTIMENT).examples
    summary = summarize(examples, FakeTokenizer())
    assert summary.examples == 60 and summary.unit == "tokens" and summary.chats == 0
    assert summary.labels == (("negative", 39), ("positive", 21))
    stats = summary.lengths
    assert stats.min <= stats.p50 <= stats.p95 <= stats.max and stats.min <= stats.mean <= stats.max
    free_text = summarize(load_examples(GOOD / "gsm8k_test_20.jsonl").examples)
    assert free_text.labels == () and free_text.unit == "characters" and free_text.distinct_targets == 20


def test_targets_look_like_labels_only_when_few_and_repeated():
    assert looks_like_labels(["a", "b", "a", "b"])
    assert not looks_like_labels(["a", "b", "c"])
    assert not looks_like_labels([])


def test_label_map_and_label_arguments(tmp_path):
    assert parse_label_map("0=negative, 1=positive") == {"0": "negative", "1": "positive"}
    assert parse_label_map('{"0": "neg", "1": 2}') == {"0": "neg", "1": "2"}
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"a": "b"}))
    assert parse_label_map(str(path)) == {"a": "b"}
    assert parse_label_map(None) is None
    with pytest.raises(TuneoffError, match="label map"):
        parse_label_map("0:negative")
    assert parse_labels("a, b,c") == ["a", "b", "c"]
    assert len(parse_labels(str(GOOD / "banking77_categories.json"))) == 77
    (tmp_path / "labels.txt").write_text("x\n\ny\n")
    assert parse_labels(str(tmp_path / "labels.txt")) == ["x", "y"]
    with pytest.raises(TuneoffError):
        parse_labels(" , ")


def _validate(monkeypatch, file, input_col=None, target_col=None, label_map=None, labels=None, max_tokens=None,
              show=20) -> tuple[int, str]:
    """`tuneoff validate` as the CLI runs it, with a fake tokenizer and a wide console."""
    monkeypatch.setattr(cli, "_validation_tokenizer", lambda model, required: FakeTokenizer())
    out = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=out, width=200))
    args = [str(file)] + [x for flag, value in (("--input-col", input_col), ("--target-col", target_col),
                                               ("--label-map", label_map), ("--labels", labels),
                                               ("--max-tokens", max_tokens), ("--show", show))
                          if value is not None for x in (flag, str(value))]
    result = CliRunner().invoke(cli.build_app(), ["validate", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, out.getvalue()


def test_run_validate_prints_each_problem_and_fails(monkeypatch):
    code, out = _validate(monkeypatch, BAD / "multi_problem.jsonl", max_tokens=1)
    assert code == 1
    assert f"{BAD / 'multi_problem.jsonl'}:4: MissingField [completion]: no 'completion'" in out
    assert ":1: TooLong" in out and ":5: TooLong" in out and "6 error(s), 1 warning(s)" in out
    assert "Summary" in out


def test_run_validate_passes_a_good_file_with_its_label_set(monkeypatch):
    code, out = _validate(monkeypatch, GOOD / "banking77_test_60.csv", None, "category",
                          labels=str(GOOD / "banking77_categories.json"))
    assert code == 0 and "ok" in out and "examples" in out and "60" in out


def test_printing_caps_lines_per_kind_and_the_cli_flag_0_prints_all(monkeypatch):
    out = io.StringIO()
    code = print_validation(validate_file(BAD / "duplicate_example.jsonl"), Console(file=out, width=200), show=0)
    assert code == 0 and "... and 1 more DuplicateExample" in out.getvalue()
    code, printed = _validate(monkeypatch, BAD / "duplicate_example.jsonl", show=0)
    assert code == 0 and ":4: DuplicateExample" in printed and "more" not in printed


def test_run_validate_sst2_with_a_label_map(monkeypatch):
    code, out = _validate(monkeypatch, GOOD / "sst2_dev_60.tsv", "sentence|content", "label",
                          "0=negative,1=positive")
    assert code == 0 and "negative 39" in out


def test_a_missing_file_is_a_user_error_with_a_hint():
    with pytest.raises(TuneoffError) as error:
        load_examples(GOOD / "prompt_completoin.jsonl")
    assert "no such file" in str(error.value) and "prompt_completion.jsonl" in error.value.hint
