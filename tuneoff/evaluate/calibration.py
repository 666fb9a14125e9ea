"""Calibrated label scoring: correct a model's prior towards some labels before the argmax.

A small model asked "positive or negative?" may prefer one label whatever the review says (the
demo's zero-shot SST-2 arm recalls `positive` 17-20% of the time). Two published corrections, both
computed from the same label scores the engine already has, plus a few extra scoring calls:

- `contextual` (Zhao et al. 2021, "Calibrate Before Use"): score the labels for content-free inputs
  ("N/A", "", "[MASK]") in the very same prompt (same instruction and demos), average their label
  distribution, and divide it out: p'(y|x) ∝ p(y|x) / p_cf(y). Reported up to +30 points on SST-2.
- `pmi` (domain-conditional PMI, Holtzman et al. 2021): subtract log p(y | domain premise), the
  prompt with no demos and an empty input, from log p(y | x); no renormalisation over labels.

`check_label_words` warns when labels are hard to tell apart by their scores at all: labels that
share their first token (the first token carries most of the decision) or differ a lot in length
(summed log-probabilities penalise long labels).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Literal, Sequence

if TYPE_CHECKING:
    from ..data import Example
    from ..models.base import Message
    from ..prompting.strategies import Prompter

Calibration = Literal["none", "contextual", "pmi"]
CONTENT_FREE = ("N/A", "", "[MASK]")
"""Zhao et al.'s content-free inputs."""


def reference_inputs(method: Calibration) -> tuple[tuple[str, bool], ...]:
    """(input text, keep the item's demos) for each reference prompt of a method."""
    if method == "contextual":
        return tuple((text, True) for text in CONTENT_FREE)
    if method == "pmi":
        return (("", False),)
    return ()


def reference_chats(prompter: Prompter, example: Example, demos: Sequence[Example],
                    method: Calibration) -> list[list[Message]]:
    """An item's reference prompts: its own prompt with the input blanked (and its demos, where the
    method keeps them). The engine scores them once per distinct prompt; the serving probe does too."""
    chats = []
    for text, keep_demos in reference_inputs(method):
        blank = dataclasses.replace(example, input=text, context=(), fields={k: text for k in example.fields})
        chats.append(prompter.messages(blank, demos if keep_demos else []))
    return chats


def _log_softmax(values: Sequence[float]) -> list[float]:
    top = max(values)
    norm = top + math.log(sum(math.exp(v - top) for v in values))
    return [v - norm for v in values]


def calibrate(scores: Sequence[float], references: Sequence[Sequence[float]], method: Calibration) -> list[float]:
    """Calibrated per-label scores (higher wins) from an item's scores and its reference prompts' scores."""
    if method == "none" or not references:
        return list(scores)
    if method == "pmi":
        return [s - r for s, r in zip(scores, references[0])]
    # contextual: the mean label distribution over the content-free inputs, divided out
    probs = [[math.exp(v) for v in _log_softmax(ref)] for ref in references]
    mean = [sum(p[k] for p in probs) / len(probs) for k in range(len(scores))]
    return [s - math.log(max(m, 1e-12)) for s, m in zip(_log_softmax(scores), mean)]


def check_label_words(label_tokens: dict[str, list[int]], ratio: float = 3.0) -> list[str]:
    """Warnings about label sets that label scoring cannot judge fairly.

    label_tokens: each label's token ids as the model scores it.
    """
    warnings = []
    first: dict[int, list[str]] = {}
    for label, ids in label_tokens.items():
        if ids:
            first.setdefault(ids[0], []).append(label)
    shared = [group for group in first.values() if len(group) > 1]
    if shared:
        shown = "; ".join(", ".join(group[:4]) + (" ..." if len(group) > 4 else "") for group in shared[:3])
        warnings.append(f"{sum(len(g) for g in shared)} labels share their first token with another ({shown}): "
                        "their scores differ only in later tokens; consider label_words")
    lengths = {label: len(ids) for label, ids in label_tokens.items() if ids}
    if lengths and max(lengths.values()) >= ratio * min(lengths.values()):
        short, long = min(lengths, key=lengths.get), max(lengths, key=lengths.get)
        warnings.append(f"label lengths differ {lengths[long]} vs {lengths[short]} tokens ('{long}' vs '{short}'): "
                        "summed log-probabilities favour short labels; score_norm: mean or calibration helps")
    return warnings
