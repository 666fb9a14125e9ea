"""The body of `tuneoff validate`: every problem of a data file, and a summary of it.

The CLI parses the arguments, picks the tokenizer and prints what `validate_file` returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import Problem
from .checks import Summary, Tokenizer, check_lengths, lengths_of, summarize
from .example import ColumnMapping
from .readers import load_examples


@dataclass(frozen=True)
class Validation:
    """Everything `tuneoff validate` found in one file."""

    problems: list[Problem]
    """Every problem, the readers' and the checks', in file order."""
    summary: Summary
    """What the examples that loaded hold."""

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not p.is_warning]


def validate_file(file: Path, mapping: ColumnMapping | None = None, labels: Sequence[str] | None = None,
                  max_tokens: int | None = None, tokenizer: Tokenizer | None = None) -> Validation:
    """Every problem of a data file and a summary of it.

    Args:
        file: JSON array, JSONL, CSV or TSV file.
        mapping: Input/target/id columns or keys and label map; default `ColumnMapping()`.
        labels: The label set; a target outside it is a LabelOutsideSet problem.
        max_tokens: Report examples whose context + input + target exceed this many tokens.
        tokenizer: Counts tokens; None counts characters (then `max_tokens` counts characters too).
    """
    result = load_examples(file, mapping, labels)
    lengths = lengths_of(result.examples, tokenizer)
    problems = result.problems
    if max_tokens is not None:
        problems = sorted(problems + check_lengths(result.examples, lengths[0], max_tokens, str(file)),
                          key=lambda p: (p.line, p.record or 0))
    return Validation(problems, summarize(result.examples, tokenizer, lengths))
