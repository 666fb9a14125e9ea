"""Fuzzed data loaders: any bytes, JSON shape, nesting or size, any CSV oddity gives examples or
problems with file and line — never another exception, never a hang, never gigabytes."""

from __future__ import annotations

import json
import resource

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tuneoff.data import ColumnMapping, load_examples
from tuneoff.data.readers import MAX_DEPTH, MAX_RECORD_CHARS
from tuneoff.errors import Kind, TuneoffError

from .helpers import TALLY, no_hang

pytestmark = pytest.mark.fuzz


def check_load(path, mapping=None, labels=None) -> None:
    """The contract: a LoadResult whose problems name the file and a line, within a time bound."""
    TALLY["inputs"] += 1
    with no_hang(20):
        result = load_examples(path, mapping or ColumnMapping(), labels)
    for p in result.problems:
        assert p.file == str(path) and isinstance(p.line, int) and p.line >= 0
        assert p.kind in Kind.__members__
        assert p.render()
    for ex in result.examples:
        assert isinstance(ex.input, str) and isinstance(ex.target, str)


SUFFIXES = st.sampled_from([".jsonl", ".json", ".csv", ".tsv", ".txt", ""])


@given(raw=st.binary(max_size=2000), suffix=SUFFIXES)
def test_any_bytes(tmp_path_factory, raw, suffix):
    path = tmp_path_factory.mktemp("bytes") / f"data{suffix}"
    path.write_bytes(raw)
    check_load(path)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                    max_leaves=20)
RECORD = st.fixed_dictionaries({}, optional={
    "prompt": JSON, "completion": JSON, "input": JSON, "target": JSON, "id": JSON,
    "messages": st.lists(st.fixed_dictionaries({}, optional={"role": st.sampled_from(["user", "assistant", "system",
                                                                                       "tool", 3]),
                                                             "content": JSON}) | JSON, max_size=4)})


@given(records=st.lists(RECORD | JSON, max_size=6), layout=st.sampled_from(["jsonl", "array", "pretty"]),
       labels=st.none() | st.lists(st.text(min_size=1, max_size=5), max_size=3))
def test_any_json_shape(tmp_path_factory, records, layout, labels):
    path = tmp_path_factory.mktemp("json") / ("data.jsonl" if layout == "jsonl" else "data.json")
    if layout == "jsonl":
        text = "\n".join(json.dumps(r) for r in records)
    else:
        text = json.dumps(records, indent=2 if layout == "pretty" else None)
    path.write_text(text, encoding="utf-8")
    check_load(path, labels=labels)


CELL = st.text(alphabet=st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ['"', '""', '"a,b"', "\r", "\r\n", "\n", "\t", "\x00", ",", "\ufeff", "é", "x" * 200_000])


@given(rows=st.lists(st.lists(CELL, max_size=5), max_size=6), newline=st.sampled_from(["\n", "\r\n", "\r", "\n\r"]),
       sep=st.sampled_from([",", "\t", ";"]), encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"]),
       header=st.sampled_from([["input", "target"], ["text", "label"], []]))
def test_any_csv_oddity(tmp_path_factory, rows, newline, sep, encoding, header):
    path = tmp_path_factory.mktemp("csv") / ("data.tsv" if sep == "\t" else "data.csv")
    text = newline.join(sep.join(row) for row in ([header] if header else []) + rows)
    path.write_bytes(text.encode(encoding, errors="replace"))
    check_load(path)


# ---- the regressions the fuzzing stands for, at the sizes that broke the loaders before

def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("name,text", [
    ("huge_line.jsonl", json.dumps({"input": "x" * (3 * MAX_RECORD_CHARS), "target": "y"}) + "\n"),
    ("huge_key.jsonl", json.dumps({"k" * (3 * MAX_RECORD_CHARS): "x", "target": "y"}) + "\n"),
    ("huge_element.json", json.dumps([{"input": "x" * (3 * MAX_RECORD_CHARS), "target": "y"}])),
    ("deep.jsonl", "[" * 100_000 + "]" * 100_000 + "\n"),
    ("deep.json", "[" + "{\"a\":" * 50_000 + "1" + "}" * 50_000 + "]"),
    ("huge_header.csv", ",".join(["a"] * 2_000_000) + "\nx\n"),
    ("huge_row.csv", "input,target\n" + ",".join(["y" * 100_000] * 30) + "\n"),
])
def test_huge_or_deep_records_are_refused_cheaply(tmp_path, name, text):
    """Each of these used to cost gigabytes, minutes or a RecursionError (issue 13)."""
    path = tmp_path / name
    path.write_text(text)
    before = _rss_mb()
    TALLY["inputs"] += 1
    with no_hang(20):
        result = load_examples(path, ColumnMapping())
    assert Kind.TooLarge.name in {p.kind for p in result.problems}, [p.render() for p in result.problems]
    assert _rss_mb() - before < 500
    assert all(len(p.message) < 500 for p in result.problems)  # no megabyte names echoed in messages


def test_depth_just_under_the_bound_still_loads(tmp_path):
    path = tmp_path / "nested.jsonl"
    nested = "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2)
    path.write_text('{"prompt": "a", "completion": "b", "meta": %s}\n' % nested)
    result = load_examples(path)
    assert result.problems == [] and len(result.examples) == 1


def test_missing_and_directory_paths_are_project_errors(tmp_path):
    with pytest.raises(TuneoffError, match="no such file"):
        load_examples(tmp_path / "nope.jsonl")
    with pytest.raises(TuneoffError, match="directory"):
        load_examples(tmp_path)


def test_megabyte_keys_under_the_record_bound_are_not_echoed_or_compared_slowly(tmp_path):
    """A key just under the record bound used to go whole into difflib and into the message."""
    path = tmp_path / "wide.jsonl"
    path.write_text("".join(json.dumps({"k" * 400_000 + str(i): "x", "zzz": "y"}) + "\n" for i in range(3)))
    TALLY["inputs"] += 1
    with no_hang(20):
        problems = load_examples(path).problems
    assert problems and all(len(p.render()) < 1000 for p in problems), [len(p.render()) for p in problems]
