"""Errors meant for people: a user mistake names the file, line and field, and carries a hint.

The CLI prints a `TuneoffError` in one or two lines and exits non-zero; anything else is our bug
and keeps its traceback. Data files get a finer account: every `Problem` of a file, each of a
named `Kind`, gathered into one `DataError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class TuneoffError(Exception):
    """A mistake the user can fix: bad input, a missing package, an unknown name."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None, hint: str | None = None):
        self.message = message
        self.file = file
        self.line = line
        self.field = field
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "") + ": "
        field = f"field '{self.field}': " if self.field else ""
        text = f"{where}{field}{self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class MissingPackageError(TuneoffError):
    """An optional package (an embedded model, an extra) is not installed."""


class Kind(Enum):
    """Named classes of data problems: `(severity, what it means)`.

    An error keeps a dataset from starting a run; a warning is listed by `tuneoff validate` but the
    data loads. The member name is the `kind` string of a `Problem`. The readers in `tuneoff.data`
    report the structural kinds while they read; `tuneoff.data.checks` the ones across records.
    """

    EmptyFile = ("error", "the file holds no records (nothing, only whitespace, or only a CSV header)")
    Encoding = ("error", "the file is not UTF-8 text (UTF-16, Latin-1, NUL bytes)")
    ByteOrderMark = ("warning", "a UTF-8 byte-order mark starts the file; it is skipped, some tools reject it")
    InvalidJSON = ("error", "a JSONL line or the JSON array does not parse")
    NotAnObject = ("error", "a record or chat message is not a JSON object")
    InvalidCSV = ("error", "a CSV/TSV record does not parse (e.g. a quote that is never closed)")
    MissingColumn = ("error", "a mapped column is not in the CSV/TSV header")
    DuplicateColumn = ("warning", "a header names a column twice; the first one is used")
    RaggedRow = ("error", "a CSV/TSV row has a different number of fields than the header")
    MissingField = ("error", "a record lacks a key it needs (input, target, messages, role, content)")
    WrongType = ("error", "a value has the wrong JSON type (e.g. `messages` not a list)")
    EmptyField = ("error", "an input, target or message content is empty or only whitespace")
    NonStringContent = ("error", "a text value is not a string (a number, list, object or null)")
    UnknownRole = ("error", "a chat message role is not system, developer, user or assistant")
    NoAssistantTurn = ("error", "a chat does not end with an assistant message (the target)")
    NoUserTurn = ("error", "the message before the final assistant message is not a user message")
    LabelOutsideSet = ("error", "a target is not in the declared label set or label map")
    DuplicateId = ("error", "an id is used by an earlier record too")
    DuplicateExample = ("warning", "same context, input and target as an earlier record")
    ConflictingTarget = ("warning", "same context and input as an earlier record, with a different target")
    TooLong = ("error", "input + target is longer than the token budget")
    TooLarge = ("error", "a record is over 1,000,000 characters, or nested past 100 levels: not a training example")

    @property
    def is_warning(self) -> bool:
        return self.value[0] == "warning"

    @property
    def help(self) -> str:
        return self.value[1]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one record of a data file."""

    kind: str
    """Named class of the problem: the name of a `Kind` member, e.g. `InvalidJSON`, `MissingField`."""
    file: str
    line: int
    """1-based line (JSON/JSONL/CSV record line); 0 when the problem is about the whole file."""
    message: str
    field: str | None = None
    record: int | None = None
    """1-based position of the record in a JSON array, whose records may share a line; None for
    JSONL and CSV/TSV, where the line is the record."""

    def render(self) -> str:
        field = f" [{self.field}]" if self.field else ""
        # `file:line:` first, so editors and terminals still jump to it
        return f"{self.file}:{self.line}: {self.where()}{self.kind}{field}: {self.message}"

    def where(self) -> str:
        """`record N: ` inside a JSON array, else nothing."""
        return f"record {self.record}: " if self.record is not None else ""

    @property
    def is_warning(self) -> bool:
        return Kind[self.kind].is_warning


def problem(kind: Kind, file: str, line: int, message: str, field: str | None = None,
            record: int | None = None) -> Problem:
    """A `Problem` of a named kind (the `Kind` member keeps kind strings free of typos)."""
    return Problem(kind.name, file, line, message, field, record)


class DataError(TuneoffError):
    """A dataset has problems; it never starts a run. Carries every problem, not the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        first = self.problems[0]
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(f"{first.where()}{first.kind}: {first.message}{more}", file=first.file, line=first.line or None,
                         field=first.field, hint="run `tuneoff validate FILE` to list every problem")


def did_you_mean(name: str, known: list[str]) -> str:
    """A hint for an unknown registry name: the closest known names."""
    import difflib

    def score(k: str) -> float:
        # also against k's prefix: "smolm2" should find "smollm2-135m-instruct"
        return max(difflib.SequenceMatcher(None, name, k).ratio(),
                   difflib.SequenceMatcher(None, name, k[:len(name) + 1]).ratio())

    close = sorted((k for k in known if score(k) >= 0.6), key=score, reverse=True)[:3]
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    return "known: " + ", ".join(sorted(known))
