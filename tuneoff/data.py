"""Examples in: one `Example` form from prompt/completion JSON(L), chat JSONL and CSV/TSV (splits: `splits.py`).

    from tuneoff.data import ColumnMapping, load_dataset
    from tuneoff.splits import split_examples
    mapping = ColumnMapping("sentence|content", "label", {"0": "negative", "1": "positive"})
    splits = split_examples(load_dataset("sst2/train.tsv", mapping), test=0.1, dev=0.1, seed=0)

Formats, told apart by extension and first character:
  - a JSON array of objects (`[` first), or JSONL: one object per line (`.json` files may be either);
  - chat records `{"messages": [...]}` (OpenAI fine-tuning format): the last message is the assistant's
    target, the user message right before it the input, everything earlier the `context`;
  - flat records (JSON keys or CSV/TSV columns) named by a `ColumnMapping`.
A UTF-8 byte-order mark (Excel writes one) is skipped with a ByteOrderMark warning; any other encoding
is an error. Every problem is collected, not only the first (kinds: `tuneoff.validation.Kind`).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DataError, Problem, TuneoffError, did_you_mean
from .validation import Kind, check_examples, is_warning, problem


@dataclass(frozen=True)
class Example:
    """One task item, whatever file it came from.

    Prompting strategies turn it into chat messages; fine-tuning turns it into prompt/completion
    tokens. `input` is what the user says, `target` what a perfect model answers.
    """

    input: str
    """The final user turn: a prompt, the joined input columns of a CSV row, or the chat's last user message."""
    target: str
    """The expected answer: the completion, the label name, or the final assistant message."""
    context: tuple[dict, ...] = ()
    """Chat messages that come before `input` (system prompt, earlier turns); empty for flat data."""
    fields: dict = field(default_factory=dict, compare=False, hash=False)
    """The original columns/keys (strings), for templates that refer to them by name."""
    source: str = ""
    """File the example was read from."""
    line: int = 0
    """1-based line (record) in that file, for error messages."""
    id: str = ""
    """Stable identifier: `<file stem>:<line>` unless the data gives one."""


DEFAULT_INPUT = "prompt|input|text|sentence|content|question"
"""Input key/column when none is given: the first of these present (OpenAI, HF, GLUE, GSM8K names)."""
DEFAULT_TARGET = "completion|target|output|label|category|answer"
"""Target key/column when none is given: the first of these present."""
ROLES = ("system", "developer", "user", "assistant")
"""Chat roles a message may have; `developer` is OpenAI's newer name for `system`."""


@dataclass(frozen=True)
class ColumnMapping:
    """Which columns (CSV/TSV) or keys (flat JSON/JSONL) hold the input, target and id.

    Chat records (`{"messages": [...]}`) ignore `input`/`target`; the label map applies to all.
    """

    input: str | None = None
    """Input column(s): `a|b` takes the first present (SST-2's `sentence|content`), `a,b` joins
    several as `a: value` lines; None: DEFAULT_INPUT."""
    target: str | None = None
    """Target column, `a|b` allowed; None: DEFAULT_TARGET."""
    label_map: dict[str, str] | None = None
    """Raw target -> label name, e.g. {"0": "negative", "1": "positive"}; a raw value not in it is a
    LabelOutsideSet problem."""
    id: str | None = None
    """Column holding a stable example id; None: `<file stem>:<line>`."""

    def __post_init__(self):
        for name in ("input", "target"):
            spec = getattr(self, name)
            if spec is not None and any(not alt.strip() for group in spec.split(",") for alt in group.split("|")):
                raise TuneoffError(f"empty column name in '{spec}'", field=name,
                                   hint="write `a|b` for alternatives, `a,b` to join several columns")
        if self.target is not None and "," in self.target:
            raise TuneoffError("a target is one column", field="target", hint="use `a|b` for alternatives")
        if self.id is not None and (not self.id.strip() or set(self.id) & {",", "|"}):
            raise TuneoffError(f"an id is one column, got '{self.id}'", field="id")
        if self.label_map is not None:
            object.__setattr__(self, "label_map", {str(k): str(v) for k, v in self.label_map.items()})

    def input_groups(self) -> list[list[str]]:
        """Input columns, each a list of alternatives."""
        return [[alt.strip() for alt in group.split("|")] for group in (self.input or DEFAULT_INPUT).split(",")]

    def target_alternatives(self) -> list[str]:
        return [alt.strip() for alt in (self.target or DEFAULT_TARGET).split("|")]


@dataclass
class LoadResult:
    """Examples that loaded and every problem found (errors and warnings, in file order)."""

    examples: list[Example]
    """The records that became examples; a record with an error is left out."""
    problems: list[Problem]
    """Every problem; kinds and severities are in `tuneoff.validation.Kind`."""

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not is_warning(p)]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if is_warning(p)]


class _Reader:
    """Turns the records of one file into examples, collecting problems as it goes."""

    def __init__(self, path: Path, mapping: ColumnMapping):
        self.file = str(path)
        self.stem = path.stem
        self.mapping = mapping
        self.problems: list[Problem] = []
        self.examples: list[Example] = []

    def report(self, kind: Kind, line: int, message: str, field: str | None = None) -> None:
        self.problems.append(problem(kind, self.file, line, message, field))

    # ---- text values

    def text(self, value: Any, line: int, field: str, allow_int: bool = True) -> str | None:
        """A non-empty string, or None after reporting why not. Integers (label ids) become strings."""
        if allow_int and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            self.report(Kind.NonStringContent, line, f"expected a string, got {_json_type(value)}", field)
            return None
        if not value.strip():
            self.report(Kind.EmptyField, line, "empty" if not value else "only whitespace", field)
            return None
        return value

    def label(self, raw: str, line: int, field: str) -> str | None:
        label_map = self.mapping.label_map
        if label_map is None:
            return raw
        if raw not in label_map:
            self.report(Kind.LabelOutsideSet, line, f"'{raw}' is not in the label map "
                                                    f"({', '.join(label_map)})", field)
            return None
        return label_map[raw]

    def add(self, line: int, input: str, target: str, record: dict, context: tuple[dict, ...] = ()) -> None:
        fields = {k: v if isinstance(v, str) else json.dumps(v) for k, v in record.items() if k != "messages"}
        id_: str | None = f"{self.stem}:{line}"
        if self.mapping.id is not None:
            if self.mapping.id not in record:  # CSV headers are checked once, before any row
                self.report(Kind.MissingField, line, f"no id key '{self.mapping.id}'", self.mapping.id)
                return
            id_ = self.text(record[self.mapping.id], line, self.mapping.id)
        if id_ is not None:
            self.examples.append(Example(input, target, context, fields, self.file, line, id_))

    # ---- flat records (CSV rows, JSON objects with input/target keys)

    def flat(self, record: dict, line: int, inputs: list[str], target_key: str) -> None:
        values = [(key, self.text(record[key], line, key)) for key in inputs]
        target = self.text(record[target_key], line, target_key)
        if any(v is None for _, v in values) or target is None:
            return
        target = self.label(target, line, target_key)
        if target is None:
            return
        text = values[0][1] if len(values) == 1 else "\n".join(f"{k}: {v}" for k, v in values)
        self.add(line, text, target, record)

    def keys(self, present: dict | list[str], line: int, kind: Kind) -> tuple[list[str], str] | None:
        """The input keys and the target key found in `present`, or None after reporting each one missing."""
        groups = self.mapping.input_groups() + [self.mapping.target_alternatives()]
        chosen = [next((k for k in alternatives if k in present), None) for alternatives in groups]
        for alternatives, key in zip(groups, chosen):
            if key is None:
                others = f" (nor {', '.join(alternatives[1:])})" if len(alternatives) > 1 else ""
                hint = _closest(alternatives, list(present))
                self.report(kind, line, f"no '{alternatives[0]}'{others}; {hint}", alternatives[0])
        if None in chosen:
            return None
        return chosen[:-1], chosen[-1]

    def record(self, record: Any, line: int) -> None:
        """One JSON record: chat when it has `messages`, else flat keys."""
        if not isinstance(record, dict):
            self.report(Kind.NotAnObject, line, f"a record must be a JSON object, got {_json_type(record)}")
        elif "messages" in record:
            self.chat(record, line)
        elif (keys := self.keys(record, line, Kind.MissingField)) is not None:
            self.flat(record, line, *keys)

    # ---- chat records

    def chat(self, record: dict, line: int) -> None:
        messages = record["messages"]
        if not isinstance(messages, list):
            self.report(Kind.WrongType, line, f"expected a list of messages, got {_json_type(messages)}",
                        "messages")
            return
        if not messages:
            self.report(Kind.EmptyField, line, "no messages", "messages")
            return
        turns = [self.message(m, line, f"messages[{i}]") for i, m in enumerate(messages)]
        if any(t is None for t in turns):
            return
        if turns[-1]["role"] != "assistant":
            self.report(Kind.NoAssistantTurn, line, f"the last message is from '{turns[-1]['role']}'; "
                        "a chat ends with the assistant message to learn", f"messages[{len(turns) - 1}]")
            return
        if len(turns) < 2 or turns[-2]["role"] != "user":
            role = f"'{turns[-2]['role']}'" if len(turns) > 1 else "nothing"
            self.report(Kind.NoUserTurn, line, f"the final assistant message follows {role}, "
                        "not a user message", f"messages[{len(turns) - 2}]" if len(turns) > 1 else "messages")
            return
        target = self.label(turns[-1]["content"], line, f"messages[{len(turns) - 1}].content")
        if target is not None:
            self.add(line, turns[-2]["content"], target, record, tuple(turns[:-2]))

    def message(self, message: Any, line: int, field: str) -> dict | None:
        if not isinstance(message, dict):
            self.report(Kind.NotAnObject, line, f"a message must be an object, got {_json_type(message)}", field)
            return None
        for key in ("role", "content"):
            if key not in message:
                self.report(Kind.MissingField, line, f"the message has no '{key}'", f"{field}.{key}")
        if "role" not in message or "content" not in message:
            return None
        role = message["role"]
        if role not in ROLES:
            hint = did_you_mean(str(role), list(ROLES)) if isinstance(role, str) else f"known: {', '.join(ROLES)}"
            self.report(Kind.UnknownRole, line, f"unknown role {json.dumps(role)}; {hint}", f"{field}.role")
            return None
        content = self.text(message["content"], line, f"{field}.content", allow_int=False)
        if content is None:
            return None
        # one name for the system prompt downstream: prompting and chat templates know `system`
        return {"role": "system" if role == "developer" else role, "content": content}


def _closest(alternatives: list[str], present: list[str]) -> str:
    hints = [did_you_mean(name, present) for name in alternatives] if present else ["there are none"]
    return next((h for h in hints if h.startswith("did you mean")), hints[0])


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
             int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


# ---------------------------------------------------------------- bytes -> text -> records

def _decode(raw: bytes, r: _Reader) -> str | None:
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


def _read_jsonl(text: str, r: _Reader) -> int:
    records = 0
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        records += 1
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


def _read_json_array(text: str, r: _Reader) -> int:
    """Each element of a top-level array, at the line where it starts.

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
    while True:
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            r.report(Kind.InvalidJSON, e.lineno, f"{e.msg} (column {e.colno})")
            return records
        records += 1
        r.record(value, line_at(pos))
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


def _read_csv(text: str, delimiter: str, r: _Reader) -> int:
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
    def read(cls, row: list[str], line: int, r: _Reader) -> _Header:
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
            r.report(Kind.MissingColumn, line, f"no id column '{id_}'; {_closest([id_], names)}", id_)
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
    """Every example of a data file and every problem in it (see `tuneoff.validation.Kind`).

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
    r = _Reader(path, mapping or ColumnMapping())
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
    problems.sort(key=lambda p: p.line)  # stable: file order, then the order found
    return LoadResult(r.examples, problems)


def load_dataset(path: str | Path, mapping: ColumnMapping | None = None, labels: Sequence[str] | None = None,
                 *, delimiter: str | None = None) -> list[Example]:
    """The examples of a data file; raises `DataError` listing every error (warnings do not stop a run)."""
    result = load_examples(path, mapping, labels, delimiter=delimiter)
    if result.errors:
        raise DataError(result.errors)
    return result.examples


def digest(examples: Sequence[Example]) -> str:
    """A hash of examples' ids, inputs and targets, in order: "same data" for caches and model reuse."""
    blob = "\x1e".join(f"{ex.id}\x1f{ex.input}\x1f{ex.target}" for ex in examples)
    return hashlib.sha256(blob.encode()).hexdigest()
