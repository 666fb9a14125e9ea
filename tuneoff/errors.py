"""Errors meant for people: a user mistake names the file, line and field, and carries a hint.

The CLI prints a `TuneoffError` in one or two lines and exits non-zero; anything else is our bug
and keeps its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


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


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one record of a data file."""

    kind: str
    """Named class of the problem, e.g. `InvalidJSON`, `MissingField` (see `tuneoff.validation`)."""
    file: str
    line: int
    """1-based line (JSON/JSONL/CSV record line); 0 when the problem is about the whole file."""
    message: str
    field: str | None = None

    def render(self) -> str:
        field = f" [{self.field}]" if self.field else ""
        return f"{self.file}:{self.line}: {self.kind}{field}: {self.message}"


class DataError(TuneoffError):
    """A dataset has problems; it never starts a run. Carries every problem, not the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        first = self.problems[0]
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(f"{first.kind}: {first.message}{more}", file=first.file, line=first.line or None,
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
