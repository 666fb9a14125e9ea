"""What counts as the answer in a reference or a reply: cues, numbers, SQuAD-style normalisation."""

from __future__ import annotations

import re
import string

# the last match wins: a reasoning chain may say "the answer is" on the way to its final one
ANSWER_PATTERNS = [
    re.compile(r"####\s*([^\n]+)"),
    re.compile(r"\b(?:the\s+)?(?:final\s+)?answer\s+is\s*:?\s*([^\n]+)", re.IGNORECASE),
    re.compile(r"\banswer\s*:\s*([^\n]+)", re.IGNORECASE),
]
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def clean_answer(answer: str) -> str:
    # markdown bold, quotes and a closing full stop are decoration, not the answer
    answer = answer.strip().replace("**", "")
    answer = answer.strip(" \t\"'`")
    return answer[:-1].rstrip() if answer.endswith(".") else answer


def answer_after_cue(text: str) -> str | None:
    """The text after the last "The answer is" / "Answer:" / "####" cue, or None when there is none."""
    best: tuple[int, str] | None = None
    for pattern in ANSWER_PATTERNS:
        for match in pattern.finditer(text):
            if best is None or match.start() > best[0]:
                best = (match.start(), match.group(1))
    return clean_answer(best[1]) if best else None


def last_number(text: str) -> str | None:
    """The last number in `text`, thousands separators removed ("1,234" -> "1234")."""
    found = NUMBER.findall(text)
    return found[-1].replace(",", "").rstrip(".") if found else None


def normalise_text(text: str) -> str:
    """SQuAD-style: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def as_number(text: str | None) -> float | None:
    if text is None:
        return None
    # a GSM8K target is a worked solution ending in "#### N": the number after the cue is the answer
    found = last_number(answer_after_cue(text) or text)
    try:
        return float(found) if found is not None else None
    except ValueError:
        return None
