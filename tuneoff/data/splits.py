"""Splits and subsamples: seeded, stratified by label, nested (a smaller sample is inside a larger one).

    from tuneoff.data import load_splits, split_examples, subsample
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import DataError, Problem, TuneoffError
from .example import ColumnMapping, Example, looks_like_labels
from .readers import load_examples


@dataclass
class Splits:
    """Train, dev and test examples of one task."""

    train: list[Example]
    """Fine-tuning data and the pool of few-shot demos."""
    dev: list[Example]
    """Prompt optimisation and early stopping."""
    test: list[Example]
    """The reported numbers."""


def stratified_order(examples: Sequence[Example], seed: int = 0) -> list[int]:
    """Indices of `examples` in a seeded order whose every prefix is stratified by target.

    Systematic sampling per class: the j-th of a class's N_c shuffled items gets the key
    (j + u_c) / N_c with a random offset u_c, and all items are sorted by key. Any prefix of n items
    then holds each class within one of its proportional share, and prefixes are nested, so a
    learning curve's 100 examples are among its 500. Free-text targets form one class (a shuffle).
    We use this rather than sklearn's `train_test_split(stratify=...)`, which is neither nested nor
    usable for classes with a single item.
    """
    rng = random.Random(seed)
    stratify = looks_like_labels([ex.target for ex in examples])
    classes: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        classes.setdefault(ex.target if stratify else "", []).append(i)
    keyed: list[tuple[float, float, int]] = []
    for name in sorted(classes):  # sorted: the draws must not depend on file order of first appearance
        members = classes[name]
        rng.shuffle(members)
        offset = rng.random()
        keyed.extend(((j + offset) / len(members), rng.random(), i) for j, i in enumerate(members))
    keyed.sort()
    return [i for _, _, i in keyed]


def _size(value: float | int, total: int, name: str) -> int:
    if isinstance(value, float):
        if not 0 <= value < 1:
            raise TuneoffError(f"a fraction must be in [0, 1), got {value}", field=name)
        return max(1, round(value * total)) if value > 0 and total > 1 else 0
    if value < 0:
        raise TuneoffError(f"a count must be >= 0, got {value}", field=name)
    return min(value, total)


def split_examples(examples: Sequence[Example], test: float | int = 0.1, dev: float | int = 0.0,
                   seed: int = 0) -> Splits:
    """A seeded split, stratified by target when targets are labels; each part keeps file order.

    Args:
        examples: What to split.
        test: Fraction (a float in [0, 1)) or number (an int) of examples for test.
        dev: Fraction or number of examples for dev.
        seed: Same seed and examples, same split, on any machine.
    """
    n_test, n_dev = _size(test, len(examples), "test"), _size(dev, len(examples), "dev")
    if examples and n_test + n_dev >= len(examples):
        raise TuneoffError(f"test ({n_test}) + dev ({n_dev}) leave nothing of {len(examples)} examples "
                           "to train on", field="test", hint="split off smaller fractions")
    order = stratified_order(examples, seed)

    def part(indices: list[int]) -> list[Example]:
        return [examples[i] for i in sorted(indices)]

    return Splits(train=part(order[n_test + n_dev:]), dev=part(order[n_test:n_test + n_dev]),
                  test=part(order[:n_test]))


def subsample(examples: Sequence[Example], n: int | None, seed: int = 0) -> list[Example]:
    """A seeded, stratified subsample of `n` examples in file order (all of them when n is None or
    too large); smaller n gives a subset of larger n with the same seed."""
    if n is None or n >= len(examples):
        return list(examples)
    if n < 0:
        raise TuneoffError(f"a sample size must be >= 0, got {n}", field="n")
    return [examples[i] for i in sorted(stratified_order(examples, seed)[:n])]


def load_splits(train: str | Path | None, dev: str | Path | None = None, test: str | Path | None = None, *,
                mapping: ColumnMapping | None = None, labels: Sequence[str] | None = None,
                fraction: float = 0.1, seed: int = 0) -> Splits:
    """Splits from files; a missing dev or test is split off `train` (`fraction` of it each).

    Raises one `DataError` listing the errors of every file.
    """
    loaded: dict[str, list[Example]] = {}
    errors: list[Problem] = []
    for name, path in (("train", train), ("dev", dev), ("test", test)):
        if path is not None:
            result = load_examples(path, mapping, labels)
            errors += result.errors
            loaded[name] = result.examples
    if errors:
        raise DataError(errors)
    if "train" not in loaded:
        return Splits(train=[], dev=loaded.get("dev", []), test=loaded.get("test", []))
    split = split_examples(loaded["train"], test=0 if "test" in loaded else fraction,
                           dev=0 if "dev" in loaded else fraction, seed=seed)
    return Splits(train=split.train, dev=loaded.get("dev", split.dev), test=loaded.get("test", split.test))
