"""Checks over loaded examples, and a summary of what a data file holds.

The readers report the structural problems (bad JSON, a missing column) while they read; the
checks here look across records: duplicates, labels outside the set, examples over a token budget.
`validate.py` puts them together for `tuneoff validate`.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import Kind, Problem, did_you_mean, problem
from .example import Example, looks_like_labels

Tokenizer = Callable[..., Any]
"""A `tokenizers.Tokenizer`, or anything called like a Hugging Face tokenizer:
`tok(list_of_texts, add_special_tokens=False)["input_ids"]`."""


# ---------------------------------------------------------------- checks across records

def check_examples(examples: Sequence[Example], labels: Sequence[str] | None, file: str) -> list[Problem]:
    """LabelOutsideSet, DuplicateId, DuplicateExample and ConflictingTarget over loaded examples."""
    problems: list[Problem] = []
    allowed = set(labels) if labels is not None else None
    hints: dict[str, str] = {}  # a wrong mapping repeats one bad value thousands of times: match it once
    seen_ids: dict[str, Example] = {}
    seen: dict[tuple, Example] = {}  # (context, input) -> the first example with it

    def report(kind: Kind, ex: Example, message: str, field: str | None = None) -> None:
        problems.append(problem(kind, file, ex.line, message, field, ex.record))

    for ex in examples:
        if allowed is not None and ex.target not in allowed:
            if ex.target not in hints:
                hints[ex.target] = _closest_label(ex.target, labels)
            report(Kind.LabelOutsideSet, ex, f"'{_short(ex.target)}' is not a label; {hints[ex.target]}", "target")
        if ex.id in seen_ids:
            report(Kind.DuplicateId, ex, f"id '{ex.id}' is already used on {seen_ids[ex.id].where()}", "id")
        else:
            seen_ids[ex.id] = ex
        # contexts hold dicts; their JSON text is the hashable form
        key = (json.dumps(ex.context, sort_keys=True) if ex.context else "", ex.input)
        first = seen.setdefault(key, ex)
        if first is ex:
            continue
        if first.target == ex.target:
            report(Kind.DuplicateExample, ex, f"same input and target as {first.where()}")
        else:
            report(Kind.ConflictingTarget, ex, f"same input as {first.where()}, whose target is "
                                               f"'{_short(first.target)}' (here '{_short(ex.target)}')", "target")
    return problems


def check_lengths(examples: Sequence[Example], lengths: Sequence[int], max_tokens: int,
                  file: str) -> list[Problem]:
    """TooLong for each example whose input + target exceeds `max_tokens`."""
    return [problem(Kind.TooLong, file, ex.line,
                    f"{n} tokens (context + input + target, before any chat template) > {max_tokens}",
                    record=ex.record)
            for ex, n in zip(examples, lengths) if n > max_tokens]


def _closest_label(name: str, labels: Sequence[str], most: int = 8) -> str:
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
    # a `tokenizers.Tokenizer` (tokenizer.json) or a transformers tokenizer's Rust backend
    backend = tokenizer if hasattr(tokenizer, "encode_batch") else getattr(tokenizer, "backend_tokenizer", None)
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

