"""Reading answers out of model replies: extractors, label matching, numbers.

A reply is first cut down to its answer by an extractor (chain of thought ends in "The answer is X",
GSM8K solutions in "#### X"); the answer is then read as the task needs it: a label from the
declared set, a number, or free text. What cannot be read is a format violation; a label-like
answer outside the declared set is a hallucinated label. Both are counted, never silently dropped.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Callable, Sequence

from ..metrics import NUMBER, answer_after_cue, clean_answer, last_number  # noqa: F401 (one definition of an answer)

def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


EXTRACTORS: dict[str, Callable[[str, bool], str | None]] = {
    # auto: the cue if there is one, else the last line of a reasoning chain, or the whole reply verbatim
    # (a free-text answer's own punctuation counts for chrF and exact match)
    "auto": lambda t, cot: answer_after_cue(t) or (
        (clean_answer(_lines(t)[-1]) if _lines(t) else None) if cot else (t.strip() or None)),
    "answer": lambda t, cot: answer_after_cue(t),
    "text": lambda t, cot: t.strip() or None,
    "first_line": lambda t, cot: clean_answer(_lines(t)[0]) if _lines(t) else None,
    "last_line": lambda t, cot: clean_answer(_lines(t)[-1]) if _lines(t) else None,
    "last_number": lambda t, cot: last_number(t),
}
"""Named extractors: (reply, chain_of_thought) -> answer or None. The one source of these names."""


def extract_answer(text: str, extractor: str = "auto", cot: bool = False) -> str | None:
    """The answer part of a reply; `extractor` is a name in EXTRACTORS or a regex (first group, else match)."""
    if extractor in EXTRACTORS:
        return EXTRACTORS[extractor](text, cot)
    matches = list(re.finditer(extractor, text))
    if not matches:
        return None
    last = matches[-1]
    return clean_answer(last.group(1) if last.groups() else last.group(0)) or None


def normalise_label(text: str) -> str:
    """Case, underscores/hyphens and surrounding punctuation do not make a different label."""
    text = re.sub(r"[_\-]+", " ", text.lower())
    return " ".join(text.split()).strip(string.punctuation + " ")


def match_label(answer: str, labels: Sequence[str]) -> str | None:
    """The declared label an answer names: an exact match after normalisation, else the first one mentioned."""
    norm = normalise_label(answer)
    by_norm = {normalise_label(label): label for label in labels}
    if norm in by_norm:
        return by_norm[norm]
    found = []
    for key, label in by_norm.items():
        hit = re.search(rf"(?<!\w){re.escape(key)}(?!\w)", norm) if key else None
        if hit:
            found.append((hit.start(), -len(key), label))  # earliest; on a tie the longest ("card arrival" > "card")
    return min(found)[2] if found else None


def looks_like_label(answer: str, labels: Sequence[str]) -> bool:
    """A short phrase (no longer than the longest label, plus one word) without clause punctuation:
    the model meant it as a label. Anything else is prose that never named one."""
    text = answer.strip().rstrip(".").strip()
    longest = max((len(normalise_label(label).split()) for label in labels), default=1)
    return bool(text) and not re.search(r"[,;:!?()\n]", text) and len(normalise_label(text).split()) <= longest + 1


@dataclass(frozen=True)
class Parsed:
    """What a reply says, as the task reads it."""

    prediction: str | None
    """The label / number / text predicted; None when the reply could not be read (a format violation)."""
    violation: bool = False
    """The reply did not give an answer in the expected form."""
    hallucinated: bool = False
    """Label tasks: the answer looks like a label but is not in the declared set (scored wrong)."""


def parse_reply(text: str, *, labels: Sequence[str] | None, metric: str, extractor: str = "auto",
                cot: bool = False) -> Parsed:
    """Read a generated reply as a prediction for the task's metric."""
    answer = extract_answer(text, extractor, cot)
    if answer is None:
        return Parsed(None, violation=True)
    if labels:
        label = match_label(answer, labels)
        if label is not None:
            return Parsed(label)
        if looks_like_label(answer, labels):
            return Parsed(normalise_label(answer), hallucinated=True)
        return Parsed(None, violation=True)
    if metric == "numeric":
        number = last_number(answer)
        return Parsed(number) if number is not None else Parsed(None, violation=True)
    return Parsed(answer)
