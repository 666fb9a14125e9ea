"""What can be wrong with a data file, checks over loaded examples, and a summary of what is there.

`Kind` is the one list of problem classes. The loaders in `tuneoff.data` report the structural
ones (bad JSON, a missing column) while they read; the checks here look across records
(duplicates, labels outside the set, examples over a token budget). `run_validate` is the body
of `tuneoff validate`.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import Problem, TuneoffError, did_you_mean

if TYPE_CHECKING:
    from rich.console import Console

    from .data import Example

Tokenizer = Callable[..., Any]
"""Anything called like a Hugging Face tokenizer: `tok(list_of_texts, add_special_tokens=False)["input_ids"]`."""


class Kind(Enum):
    """Named classes of data problems: `(severity, what it means)`.

    An error keeps a dataset from starting a run; a warning is listed by `tuneoff validate` but the
    data loads. The member name is the `kind` string of a `Problem`.
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

    @property
    def is_warning(self) -> bool:
        return self.value[0] == "warning"

    @property
    def help(self) -> str:
        return self.value[1]


def problem(kind: Kind, file: str, line: int, message: str, field: str | None = None) -> Problem:
    """A `Problem` of a named kind (the `Kind` member keeps kind strings free of typos)."""
    return Problem(kind.name, file, line, message, field)


def is_warning(p: Problem) -> bool:
    return Kind[p.kind].is_warning


def looks_like_labels(targets: Sequence[str]) -> bool:
    """Targets are class labels when there are few distinct values, each repeated on average."""
    distinct = len(set(targets))
    return 0 < distinct <= 100 and distinct * 2 <= len(targets)


# ---------------------------------------------------------------- checks across records

def check_examples(examples: Sequence[Example], labels: Sequence[str] | None, file: str) -> list[Problem]:
    """LabelOutsideSet, DuplicateId, DuplicateExample and ConflictingTarget over loaded examples."""
    problems: list[Problem] = []
    allowed = set(labels) if labels is not None else None
    hints: dict[str, str] = {}  # a wrong mapping repeats one bad value thousands of times: match it once
    seen_ids: dict[str, int] = {}
    seen: dict[tuple, tuple[str, int]] = {}  # (context, input) -> (target, first line)
    for ex in examples:
        if allowed is not None and ex.target not in allowed:
            if ex.target not in hints:
                hints[ex.target] = _closest(ex.target, labels)
            problems.append(problem(Kind.LabelOutsideSet, file, ex.line,
                                    f"'{_short(ex.target)}' is not a label; {hints[ex.target]}", "target"))
        if ex.id in seen_ids:
            problems.append(problem(Kind.DuplicateId, file, ex.line,
                                    f"id '{ex.id}' is already used on line {seen_ids[ex.id]}", "id"))
        else:
            seen_ids[ex.id] = ex.line
        # contexts hold dicts; their JSON text is the hashable form
        key = (json.dumps(ex.context, sort_keys=True) if ex.context else "", ex.input)
        if key not in seen:
            seen[key] = (ex.target, ex.line)
            continue
        target, first = seen[key]
        if target == ex.target:
            problems.append(problem(Kind.DuplicateExample, file, ex.line,
                                    f"same input and target as line {first}"))
        else:
            problems.append(problem(Kind.ConflictingTarget, file, ex.line,
                                    f"same input as line {first}, whose target is '{_short(target)}' "
                                    f"(here '{_short(ex.target)}')", "target"))
    return problems


def check_lengths(examples: Sequence[Example], lengths: Sequence[int], max_tokens: int,
                  file: str) -> list[Problem]:
    """TooLong for each example whose input + target exceeds `max_tokens`."""
    return [problem(Kind.TooLong, file, ex.line,
                    f"{n} tokens (context + input + target, before any chat template) > {max_tokens}")
            for ex, n in zip(examples, lengths) if n > max_tokens]


def _closest(name: str, labels: Sequence[str], most: int = 8) -> str:
    hint = did_you_mean(name, list(labels))
    if hint.startswith("did you mean") or len(labels) <= most:
        return hint
    return f"labels: {', '.join(labels[:most])}, ... ({len(labels) - most} more)"


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


# ---------------------------------------------------------------- lengths and summary

def _texts(examples: Sequence[Example]) -> tuple[list[str], list[str]]:
    sources = ["\n".join([m["content"] for m in ex.context] + [ex.input]) for ex in examples]
    return sources, [ex.target for ex in examples]


def _count(texts: list[str], tokenizer: Tokenizer | None) -> list[int]:
    if tokenizer is None:
        return [len(t) for t in texts]
    distinct = list(dict.fromkeys(texts))  # label targets repeat: tokenize each text once
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and backend.truncation is None:
        # the Rust tokenizer directly: HF's per-text conversion to Python lists costs as much again
        encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
        counts = [len(e) for e in encode(distinct, add_special_tokens=False)]
    else:
        counts = [len(ids) for ids in tokenizer(distinct, add_special_tokens=False)["input_ids"]]
    by_text = dict(zip(distinct, counts))
    return [by_text[t] for t in texts]


def lengths_of(examples: Sequence[Example], tokenizer: Tokenizer | None = None) -> tuple[list[int], list[int]]:
    """(context+input+target, target) lengths per example: tokens, or characters without a tokenizer."""
    sources, targets = _texts(examples)
    target_lengths = _count(targets, tokenizer)
    return [s + t for s, t in zip(_count(sources, tokenizer), target_lengths)], target_lengths


@dataclass(frozen=True)
class LengthStats:
    """Distribution of per-example lengths."""

    min: int
    mean: float
    p50: int
    """Median (nearest rank)."""
    p95: int
    """95th percentile (nearest rank)."""
    max: int

    @classmethod
    def of(cls, values: Sequence[int]) -> LengthStats | None:
        if not values:
            return None
        ordered = sorted(values)

        def rank(q: float) -> int:
            return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

        return cls(ordered[0], sum(ordered) / len(ordered), rank(0.5), rank(0.95), ordered[-1])


@dataclass(frozen=True)
class Summary:
    """What a dataset holds, for `tuneoff validate` and the report."""

    examples: int
    """Number of examples that loaded."""
    chats: int
    """Examples with chat context (system prompt or earlier turns)."""
    unit: str
    """`tokens` when a tokenizer counted, else `characters`."""
    lengths: LengthStats | None
    """Context + input + target length per example; None when there are no examples."""
    target_lengths: LengthStats | None
    """Target length alone (a budget for generated tokens)."""
    distinct_targets: int
    """Number of different targets."""
    labels: tuple[tuple[str, int], ...]
    """(label, count), most common first, when targets look like class labels; else empty."""


def summarize(examples: Sequence[Example], tokenizer: Tokenizer | None = None,
              lengths: tuple[list[int], list[int]] | None = None) -> Summary:
    """Counts, length statistics and the label distribution of `examples`.

    `lengths` takes the output of `lengths_of` when the caller already has it (no second tokenizing).
    """
    total, target = lengths if lengths is not None else lengths_of(examples, tokenizer)
    targets = [ex.target for ex in examples]
    labels = tuple(Counter(targets).most_common()) if looks_like_labels(targets) else ()
    return Summary(examples=len(examples), chats=sum(1 for ex in examples if ex.context),
                   unit="tokens" if tokenizer is not None else "characters",
                   lengths=LengthStats.of(total), target_lengths=LengthStats.of(target),
                   distinct_targets=len(set(targets)), labels=labels)


# ---------------------------------------------------------------- `tuneoff validate`

def parse_label_map(text: str | None) -> dict[str, str] | None:
    """`0=negative,1=positive`, inline JSON `{"0": "negative"}`, or a path to a JSON object file."""
    if not text:
        return None
    if text.lstrip().startswith("{") or Path(text).is_file():
        raw = _json_arg(text, "label_map")
        if not isinstance(raw, dict) or not raw:
            raise TuneoffError("a label map must be a non-empty JSON object", field="label_map",
                               hint='e.g. {"0": "negative", "1": "positive"}')
        return {str(k): str(v) for k, v in raw.items()}
    pairs = [p.strip() for p in text.split(",") if p.strip()]
    if not pairs or not all("=" in p for p in pairs):
        raise TuneoffError(f"cannot read label map '{text}'", field="label_map",
                           hint="write it as 0=negative,1=positive, or give a JSON file")
    return {k.strip(): v.strip() for k, v in (p.split("=", 1) for p in pairs)}


def parse_labels(text: str | None) -> list[str] | None:
    """`a,b,c`, or a path to a JSON list or a text file with one label per line."""
    if not text:
        return None
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix == ".json":
            raw = _json_arg(text, "labels")
            if not isinstance(raw, list):
                raise TuneoffError("a label file must hold a JSON list", file=text, field="labels")
            labels = [str(x) for x in raw]
        else:
            labels = [x.strip() for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    else:
        labels = [x.strip() for x in text.split(",") if x.strip()]
    if not labels:
        raise TuneoffError("the label set is empty", field="labels", hint="give labels as a,b,c or a file")
    return labels


def _json_arg(text: str, field: str) -> Any:
    path = Path(text).expanduser()
    source = path.read_text(encoding="utf-8") if path.is_file() else text
    try:
        return json.loads(source)
    except json.JSONDecodeError as e:
        raise TuneoffError(f"not valid JSON: {e.msg}", file=str(path) if path.is_file() else None,
                           line=e.lineno, field=field) from None


def run_validate(file: Path, input_columns: str | None = None, target_column: str | None = None,
                 label_map: str | None = None, labels: str | None = None, max_tokens: int | None = None,
                 model: str | None = None, console: Console | None = None, show: int | None = 20) -> int:
    """List every problem of a data file, then summarise it; the exit code is 1 when there are errors.

    Args:
        file: The data file: JSON array, JSONL (prompt/completion, any keys, or chat `messages`), CSV or TSV.
        input_columns: Input column(s)/key(s): `a|b` takes the first present, `a,b` joins several;
            default: the first present of prompt, input, text, sentence, content, question.
        target_column: Target column/key, `a|b` allowed; default: the first present of completion,
            target, output, label, category, answer.
        label_map: Raw target -> label name: `0=negative,1=positive`, inline JSON, or a JSON file.
        labels: The label set: `a,b,c`, a JSON list file, or a text file with one label per line.
        max_tokens: Report examples whose context + input + target exceed this many tokens.
        model: Model spec whose tokenizer counts tokens; default: the embedded default model
            (characters are counted instead if it cannot be loaded and `max_tokens` is not set).
        console: Where to print (a `rich` console); default: standard output.
        show: Most problems printed per kind (the rest are counted); None prints all.
    """
    from rich.console import Console

    # data.py builds on this module's kinds and checks, so the loaders are imported at call time
    from .data import ColumnMapping, load_examples

    console = console or Console()
    mapping = ColumnMapping(input=input_columns, target=target_column, label_map=parse_label_map(label_map))
    result = load_examples(file, mapping, parse_labels(labels))
    tokenizer = _tokenizer(model, required=max_tokens is not None, console=console)
    lengths = lengths_of(result.examples, tokenizer)
    problems = result.problems
    if max_tokens is not None:
        problems = sorted(problems + check_lengths(result.examples, lengths[0], max_tokens, str(file)),
                          key=lambda p: p.line)
    _print_problems(problems, console, show)
    _print_summary(summarize(result.examples, tokenizer, lengths), console)
    errors = [p for p in problems if not is_warning(p)]
    warnings = len(problems) - len(errors)
    verdict = f"{len(errors)} error(s), {warnings} warning(s)"
    console.print(f"[red]{verdict}[/red]" if errors else f"[green]ok[/green]: {verdict}")
    return 1 if errors else 0


def _tokenizer(model: str | None, required: bool, console: Console) -> Tokenizer | None:
    from .models import load_tokenizer

    try:
        return load_tokenizer(model) if model else load_tokenizer()
    except TuneoffError as e:
        if required or model:
            raise
        console.print(f"[dim]no tokenizer ({e.message}); lengths are in characters[/dim]")
        return None


def _print_problems(problems: list[Problem], console: Console, show: int | None) -> None:
    printed: Counter[str] = Counter()
    lines = []
    for p in problems:
        printed[p.kind] += 1
        if show is None or printed[p.kind] <= show:
            lines.append(p.render())
    for kind, count in printed.items():
        if show is not None and count > show:
            lines.append(f"... and {count - show} more {kind} ({Kind[kind].help})")
    if lines:  # one print: rich is slow per call, and markup off so `[field]` stays literal
        console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


def _print_summary(summary: Summary, console: Console) -> None:
    from rich.table import Table

    table = Table(title="Summary", show_header=False)
    table.add_row("examples", str(summary.examples))
    if summary.chats:
        table.add_row("chats with context", str(summary.chats))
    for name, stats in (("length", summary.lengths), ("target length", summary.target_lengths)):
        if stats is not None:
            table.add_row(f"{name} ({summary.unit})", f"min {stats.min}  mean {stats.mean:.1f}  p50 {stats.p50}"
                                                      f"  p95 {stats.p95}  max {stats.max}")
    table.add_row("distinct targets", str(summary.distinct_targets))
    if summary.labels:
        top = ", ".join(f"{label} {count}" for label, count in summary.labels[:10])
        more = f", ... ({len(summary.labels) - 10} more)" if len(summary.labels) > 10 else ""
        table.add_row("labels", top + more)
    console.print(table)
