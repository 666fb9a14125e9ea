"""Warnings about lengths a free-text evaluation cannot score fairly: references longer than the
generation cap (a reply cut there cannot match them in full) or than the model's context."""

from __future__ import annotations

from typing import Sequence

from ..data import Example
from ..models.base import Backend

SAMPLE = 500
"""Items whose references are measured (the first ones: the warning is a share, not a census)."""


def reference_warnings(backend: Backend, examples: Sequence[Example], cap: int) -> list[str]:
    """The share of references (in the model's tokens) longer than `cap` and than the context, as warnings."""
    refs = [r for ex in examples[:SAMPLE] for r in ex.refs()]
    if not refs:
        return []
    lengths = [backend.count_tokens(r) for r in refs]
    warnings = []
    over = sum(n > cap for n in lengths) / len(lengths)
    if over > 0.02:  # a few outliers are normal; a share this large moves the metric
        warnings.append(f"{over:.0%} of the references are longer than the generation cap ({cap} tokens): replies "
                        "cut there cannot match them in full; raise the arm's max_new_tokens")
    context = getattr(backend, "context_length", None)
    too_long = sum(n > context for n in lengths) / len(lengths) if context else 0.0
    if too_long:
        warnings.append(f"{too_long:.0%} of the references are longer than the model's context ({context} tokens)")
    return warnings
