"""The tuning budget of each side, as data: what fine-tune arms and prompt arms may try on the dev
split before their test number is taken (`tuning:` in an experiment).

A published comparison is only fair when both sides get a comparable search (Mosbach et al. 2023):
fine-tuning its learning rate and epochs (chosen on dev, evaluated at epoch ends, best epoch kept),
prompting its instruction, demos and calibration. The test split is scored once per arm, with the
configuration dev chose.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from ..errors import TuneoffError


@dataclass
class FinetuneTuning:
    """How fine-tune arms are tuned. Any option an arm gives as a list (`learning_rate: [1e-4, 3e-4]`,
    `lora: {r: [8, 16]}`, `freeze: {train_last_n: [2, 4]}`) is a candidate set; the grid is their product."""

    learning_rates: list[float] = field(default_factory=lambda: [0.5, 2.5])
    """When an arm lists no learning rates: multiples of its learning rate (or the method's default)
    tried beside it, e.g. [0.5, 2.5] -> {0.5x, 1x, 2.5x}."""
    max_epochs: int = 2
    """Epochs a surviving candidate trains; the dev metric is taken at every epoch end and the best
    epoch's weights are kept (the epoch count is chosen from one run, never by retraining)."""
    patience: int = 1
    """Epoch ends without a better dev metric before a candidate stops early."""
    halving: bool = True
    """Successive halving: every candidate trains one epoch, the better half goes on (then the better
    half of those), so the budget goes to promising configurations."""

    def __post_init__(self):
        if self.max_epochs < 1:
            raise TuneoffError("must be >= 1", field="tuning.finetune.max_epochs")
        if self.patience < 1:
            raise TuneoffError("must be >= 1", field="tuning.finetune.patience")
        if any(m <= 0 for m in self.learning_rates):
            raise TuneoffError("multiples must be > 0", field="tuning.finetune.learning_rates")


ANSWER_FORMATS = ("Answer with one word.", "Answer with one word: {{ labels | join(' or ') }}.")
"""What a person's first prompt says about the answer's form; tried by default in a prompt search."""


@dataclass
class PromptTuning:
    """How prompt arms marked `tune: true` are tuned (the optimiser, generalised)."""

    budget: int = 120
    """Model calls on dev the search may spend per arm (each candidate costs one call per dev item)."""
    dev_items: int = 40
    """Dev items each candidate is scored on."""
    paraphrases: int = 2
    """Model-written paraphrases of the instruction to try beside the user's."""
    shots: list[int] = field(default_factory=list)
    """Demo counts to try for arms that show demos (with the arm's demo selection); a zero-shot arm
    stays zero-shot. Empty: the arm's own count only."""
    calibration: list[str] = field(default_factory=lambda: ["none", "contextual"])
    """Score-mode arms: calibration methods to try."""
    demo_sets: int = 0
    """Bootstrapped demo sets to try (DSPy-style: demos the model answered right); each costs a
    bootstrap pass over training examples."""
    answer_formats: list[str] = field(default_factory=lambda: list(ANSWER_FORMATS))
    """Answer-format sentences tried appended to the instruction (Jinja2, `labels` in scope); [] turns
    them off."""
    label_words: list[dict] = field(default_factory=list)
    """Score-mode arms: verbalisers to try ({label: word}); the labels themselves always come first."""

    def optimise_options(self) -> dict:
        """The `optimise:` options a `tune: true` arm gets (see `tuneoff.prompting.arm.OptimiseSpec`)."""
        return {"budget": self.budget, "dev_items": self.dev_items, "paraphrases": self.paraphrases,
                "shot_counts": list(self.shots), "calibrations": list(self.calibration),
                "demo_sets": self.demo_sets, "answer_formats": list(self.answer_formats),
                "label_words": [dict(w) for w in self.label_words]}

    def __post_init__(self):
        if self.budget < 1 or self.dev_items < 1:
            raise TuneoffError("must be >= 1", field="tuning.prompt.budget")
        bad = [c for c in self.calibration if c not in ("none", "contextual", "pmi")]
        if bad:
            raise TuneoffError(f"unknown calibration {bad[0]!r}", field="tuning.prompt.calibration",
                               hint="none, contextual or pmi")


@dataclass
class TuningSpec:
    """Both sides' tuning budgets; present in an experiment = tuning is on."""

    finetune: FinetuneTuning = field(default_factory=FinetuneTuning)
    prompt: PromptTuning = field(default_factory=PromptTuning)


def grid(options: dict | None) -> list[dict]:
    """Every combination of the list-valued options, each as a plain options dict (nested dicts too).

    >>> grid({"learning_rate": [1, 2], "lora": {"r": [8, 16]}, "epochs": 1})[1]
    {'learning_rate': 1, 'lora': {'r': 16}, 'epochs': 1}
    """
    options = options or {}
    axes: list[tuple[tuple[str, ...], list]] = []

    def walk(prefix: tuple[str, ...], node: dict) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(prefix + (key,), value)
            elif isinstance(value, list) and key != "target_modules":  # a module list is one value
                if not value:
                    raise TuneoffError("an empty list of candidates", field=".".join(prefix + (key,)))
                axes.append((prefix + (key,), value))

    walk((), options)
    combos = []
    for values in itertools.product(*[v for _, v in axes]):
        combo = _copy(options)
        for (path, _), value in zip(axes, values):
            node = combo
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value
        combos.append(combo)
    return combos


def _copy(node):
    return {k: _copy(v) for k, v in node.items()} if isinstance(node, dict) else node
