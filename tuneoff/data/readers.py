"""Data files in: bytes -> text -> records -> `Example`s, with every problem collected.

    from tuneoff.data import ColumnMapping, load_examples
    result = load_examples("train.jsonl", ColumnMapping(input="question", target="answer"))
    result.examples, result.errors, result.warnings

Formats, told apart by extension and first character:
  - a JSON array of objects (`[` first), laid out any way (one line, pretty-printed, mixed), or
    JSONL: one object per line (`.json` files may be either);
  - chat records `{"messages": [...]}` and flat records (see `records.py`);
  - CSV/TSV, whose columns a `ColumnMapping` names.
A UTF-8 byte-order mark (Excel writes one) is skipped with a ByteOrderMark warning; any other encoding
is an error. Every problem is collected, not only the first (kinds: `tuneoff.errors.Kind`).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError, Kind, Problem, TuneoffError, did_you_mean
from .checks import check_examples
from .example import ColumnMapping, Example
from .records import RecordReader, closest


@dataclass
class LoadResult:
    """Examples that loaded and every problem found (errors and warnings, in file order)."""

    examples: list[Example]
    """The records that became examples; a record with an error is left out."""
    problems: list[Problem]
    """Every problem; kinds and severities are in `tuneoff.errors.Kind`."""

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not p.is_warning]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.is_warning]



# ---------------------------------------------------------------- bytes -> text -> records

MAX_RECORD_CHARS = 1_000_000
"""A record (JSONL line, array element, CSV row) longer than this is refused before it is parsed
further: no model's context holds it, and one 50 MB line otherwise costs gigabytes downstream."""
MAX_DEPTH = 100
"""JSON nesting past this is refused (records are flat or chat lists; deeper is an attack)."""
_TOO_LARGE = f"the record is longer than {MAX_RECORD_CHARS:,} characters"


def _too_deep(text: str) -> bool:
    """Nesting deeper than `MAX_DEPTH`, judged by brackets outside strings (json's C decoder would
    otherwise recurse until RecursionError)."""
    depth = 0
    for m in _BRACKETS.finditer(text):
        token = m.group()
        if token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif token in "]}":
            depth -= 1
    return False


_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')

def _decode(raw: bytes, r: RecordReader) -> str | None:
    """UTF-8 text, or None when the file is in an encoding we do not read at all."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # also covers UTF-32 LE
        r.report(Kind.Encoding, 1, "the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8")
        return None
    if raw.startswith(codecs.BOM_UTF8):
        r.report(Kind.ByteOrderMark, 1, "the file starts with a UTF-8 byte-order mark (skipped)")
        raw = raw[len(codecs.BOM_UTF8):]
    if b"\x00" in raw:
        line = raw.count(b"\n", 0, raw.index(b"\x00")) + 1
        r.report(Kind.Encoding, line, "NUL bytes: the file looks like UTF-16 or binary, not UTF-8 text")
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        for number, chunk in enumerate(raw.split(b"\n"), 1):
            try:
                chunk.decode("utf-8")
            except UnicodeDecodeError as e:
                r.report(Kind.Encoding, number, f"not UTF-8: byte 0x{chunk[e.start]:02x} at column {e.start + 1} "
                                                "(Latin-1 or Windows-1252? re-save the file as UTF-8)")
        # read on with replacement characters, so the rest of the file is still checked
        return raw.decode("utf-8", errors="replace")


def _read_jsonl(text: str, r: RecordReader) -> int:
    records = 0
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        records += 1
        if len(line) > MAX_RECORD_CHARS or _too_deep(line):
            r.report(Kind.TooLarge, number, _TOO_LARGE if len(line) > MAX_RECORD_CHARS
                     else f"JSON nested deeper than {MAX_DEPTH} levels")
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if records == 1 and _parses(text):
                r.report(Kind.InvalidJSON, number, "the file is one multi-line JSON value; write a JSON array "
                                                   "of records, or one record per line (JSONL)")
                return 1
            r.report(Kind.InvalidJSON, number, f"{e.msg} (column {e.colno})")
            continue
        r.record(record, number)
    return records


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


_SPACE = re.compile(r"[ \t\n\r]*")


def _read_json_array(text: str, r: RecordReader) -> int:
    """Each element of a top-level array, at the line where it starts and with its position.

    Elements are told apart by position, not line: a one-line array puts them all on line 1.
    A syntax error ends the scan: past it no element can be located reliably (JSONL can go on).
    """
    decoder = json.JSONDecoder()
    pos = _SPACE.match(text).end() + 1  # past the '['
    line, counted, records = 1, 0, 0

    def line_at(at: int) -> int:
        nonlocal line, counted
        line, counted = line + text.count("\n", counted, at), at
        return line

    pos = _SPACE.match(text, pos).end()
    if text.startswith("]", pos):
        return 0
    if _too_deep(text[pos:]):  # (the array's own bracket is already behind `pos`)
        r.report(Kind.TooLarge, 1, f"JSON nested deeper than {MAX_DEPTH} levels")
        return -1
    while True:
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            r.position = records + 1  # the element that does not parse
            r.report(Kind.InvalidJSON, e.lineno, f"{e.msg} (column {e.colno})")
            return records
        records += 1
        if end - pos > MAX_RECORD_CHARS:
            r.position = records
            r.report(Kind.TooLarge, line_at(pos), _TOO_LARGE)
        else:
            r.record(value, line_at(pos), position=records)
        r.position = None  # what follows an element (commas, the closing ']') is the array's
        pos = _SPACE.match(text, end).end()
        if text.startswith("]", pos):
            if _SPACE.match(text, pos + 1).end() < len(text):
                r.report(Kind.InvalidJSON, line_at(pos + 1), "extra text after the closing ']'")
            return records
        if not text.startswith(",", pos):
            what = "the array is never closed" if pos >= len(text) else "expected ',' or ']' after an element"
            r.report(Kind.InvalidJSON, line_at(min(pos, len(text))), what)
            return records
        pos = _SPACE.match(text, pos + 1).end()
        if text.startswith("]", pos):
            r.report(Kind.InvalidJSON, line_at(pos), "a comma before ']' (JSON allows no trailing comma)")
            return records


def _read_csv(text: str, delimiter: str, r: RecordReader) -> int:
    """Rows as flat records; a record's line is the physical line where it starts."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: _Header | None = None
    records, last = 0, 0
    while True:
        start = last + 1
        try:
            row = next(reader)
        except StopIteration:
            return records
        except csv.Error as e:
            why = "; a quote opened here is never closed" if "end of data" in str(e) else ""
            r.report(Kind.InvalidCSV, start, f"{e}{why}")
            last = reader.line_num
            continue
        last = reader.line_num
        if not row:  # blank line
            continue
        if len(row) > 10_000 or sum(map(len, row)) > MAX_RECORD_CHARS:  # (csv bounds each field, not rows)
            r.report(Kind.TooLarge, start, _TOO_LARGE if len(row) <= 10_000 else f"{len(row):,} columns")
            if header is None:
                return -1
            records += 1
            continue
        if header is None:
            header = _Header.read(row, start, r)
            if not header.keys:
                return -1  # rows mean nothing without their columns: one problem, not one per row
            continue
        records += 1
        if len(row) != len(header.names):
            r.report(Kind.RaggedRow, start, f"{len(row)} field(s), the header has {len(header.names)} "
                                            f"(delimiter {delimiter!r})")
            continue
        r.flat({name: row[i] for name, i in header.index.items()}, start, *header.keys)


@dataclass
class _Header:
    """A CSV header and the mapped columns found in it."""

    names: list[str]
    index: dict[str, int]
    """Column name -> position of its first occurrence."""
    keys: tuple[list[str], str] | None
    """(input columns, target column); None when a mapped column is missing."""

    @classmethod
    def read(cls, row: list[str], line: int, r: RecordReader) -> _Header:
        names = [name.strip() for name in row]
        index: dict[str, int] = {}
        for i, name in enumerate(names):
            if name in index:
                r.report(Kind.DuplicateColumn, line, f"column {i + 1} repeats column {index[name] + 1}", name)
            else:
                index[name] = i
        keys = r.keys(names, line, Kind.MissingColumn)
        id_ = r.mapping.id
        if id_ is not None and id_ not in index:
            r.report(Kind.MissingColumn, line, f"no id column '{id_}'; {closest([id_], names)}", id_)
            keys = None
        return cls(names, index, keys)


def _format(path: Path, text: str, delimiter: str | None) -> tuple[str, str]:
    """(`json` | `jsonl` | `csv`, delimiter): extension first, then the first character."""
    suffix = path.suffix.lower()
    first = text.lstrip()[:1]
    if delimiter is None and suffix not in (".csv", ".tsv", ".tab"):
        if first == "[":
            return "json", ""
        if first == "{" or suffix in (".json", ".jsonl", ".ndjson"):
            return "jsonl", ""
    if delimiter is None:
        first_line = text.split("\n", 1)[0]
        delimiter = "\t" if suffix in (".tsv", ".tab") or (suffix != ".csv" and "\t" in first_line) else ","
    return "csv", delimiter


# ---------------------------------------------------------------- entry points

def load_examples(path: str | Path, mapping: ColumnMapping | None = None, labels: Sequence[str] | None = None,
                  *, delimiter: str | None = None) -> LoadResult:
    """Every example of a data file and every problem in it (see `tuneoff.errors.Kind`).

    Args:
        path: JSON array, JSONL, CSV or TSV file.
        mapping: Input/target/id columns or keys and label map; default `ColumnMapping()`.
        labels: The label set; a target outside it is a LabelOutsideSet problem.
        delimiter: CSV field separator; default: tab for .tsv/.tab, else comma.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        siblings = [p.name for p in path.parent.iterdir()] if path.parent.is_dir() else []
        what = "is a directory, not a data file" if path.is_dir() else "no such file"
        raise TuneoffError(what, file=str(path), hint=did_you_mean(path.name, siblings) if siblings
                           else "check the path")
    r = RecordReader(path, mapping or ColumnMapping())
    text = _decode(path.read_bytes(), r)
    if text is not None and not text.strip():
        r.report(Kind.EmptyFile, 0, "the file is empty" if not text else "the file holds only whitespace")
    elif text is not None:
        kind, sep = _format(path, text, delimiter)
        readers = {"json": lambda: _read_json_array(text, r), "jsonl": lambda: _read_jsonl(text, r),
                   "csv": lambda: _read_csv(text, sep, r)}
        if readers[kind]() == 0:  # (-1: the CSV header already has its problem)
            r.report(Kind.EmptyFile, 0, "no records" + (" below the header" if kind == "csv" else ""))
    problems = r.problems + check_examples(r.examples, labels, r.file)
    problems.sort(key=lambda p: (p.line, p.record or 0))  # stable: file order, then the order found
    return LoadResult(r.examples, problems)


def load_dataset(path: str | Path, mapping: ColumnMapping | None = None, labels: Sequence[str] | None = None,
                 *, delimiter: str | None = None) -> list[Example]:
    """The examples of a data file; raises `DataError` listing every error (warnings do not stop a run)."""
    result = load_examples(path, mapping, labels, delimiter=delimiter)
    if result.errors:
        raise DataError(result.errors)
    return result.examples
