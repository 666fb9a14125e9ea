"""What an experiment says about money and needs: the prices the cost rows use, and the user's
constraints the verdict respects. Plain config dataclasses (read from YAML with the experiment);
the arithmetic on them lives in `tuneoff.compare`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import TuneoffError


@dataclass
class PriceTable:
    """Prices the cost rows and the break-even use. Defaults: a small self-hosted CPU box."""

    mode: Literal["hardware", "api"] = "hardware"
    """`hardware`: $/hour of the serving machine x measured seconds per request (self-hosting);
    `api`: per-token prices of a hosted model."""
    hardware_per_hour: float = 0.10
    """$ per hour of the machine that serves requests (hardware mode)."""
    training_per_hour: float | None = None
    """$ per hour of the machine that trains (default: hardware_per_hour)."""
    input_per_1k_tokens: float = 0.00015
    """$ per 1k input tokens for the base model (api mode)."""
    output_per_1k_tokens: float = 0.0006
    """$ per 1k output tokens for the base model (api mode)."""
    finetuned_input_per_1k_tokens: float | None = None
    """$ per 1k input tokens for a fine-tuned model (api mode; hosted fine-tunes often cost more)."""
    finetuned_output_per_1k_tokens: float | None = None
    """$ per 1k output tokens for a fine-tuned model (api mode)."""
    training_per_1k_tokens: float | None = None
    """$ per 1k training tokens (api mode); in hardware mode training is priced by measured time."""
    horizon_months: float = 12.0
    """Months over which one-off costs (training, optimisation, labels, people) are spread in the break-even."""
    label_per_example: float = 0.10
    """$ per labelled example an arm needs (its demo pool, training set, dev items for optimising; the
    test split every arm shares is not charged). Default $0.10: a typical crowd rate for one short
    text-classification label; AWS SageMaker Ground Truth lists $0.08 per labelled object (first 50k
    a month) plus $0.012 per Mechanical Turk worker per text-classification task, 3 workers per
    item by default: ~$0.12. Expert labels (legal, medical) cost dollars each: set your own."""
    written_per_example: float = 1.00
    """$ per written target an arm needs when the task is free text (a summary, a translation, an answer in
    house style): the writer's time, not a click. Default $1.00: about 4 minutes (read a ~130-word
    dialogue, write a ~25-word summary) at $15/hour, a common crowd-writing rate; professional
    translation is commonly quoted at $0.10-0.25 per word, $2.50-6 for such a target, and expert
    writing (legal, medical) costs more: set your own. Class labels use `label_per_example`."""
    engineer_per_hour: float = 60.0
    """$ per hour of the person who writes prompts and prepares training data. Default $60: about the
    US median wage of a software developer (BLS occupational wage statistics, 2023-24), before
    overheads; use your loaded rate."""
    prompt_hours: float = 2.0
    """Hours to write and check an arm's prompt; every arm pays them (a fine-tune is prompted too)."""
    data_hours: float = 8.0
    """Hours to prepare training data (collect, clean, format, validate) for a fine-tune or combined
    arm: a working day by default. Labelling itself is `label_per_example`."""

    def per_example(self, written: bool) -> float:
        """The price of one example an arm needs: a written target's or a class label's."""
        return self.written_per_example if written else self.label_per_example

    def __post_init__(self):
        for name in ("hardware_per_hour", "input_per_1k_tokens", "output_per_1k_tokens", "horizon_months",
                     "label_per_example", "written_per_example", "engineer_per_hour", "prompt_hours",
                     "data_hours"):
            if getattr(self, name) < 0:
                raise TuneoffError("must be >= 0", field=f"prices.{name}")
        if self.horizon_months <= 0:
            raise TuneoffError("must be > 0", field="prices.horizon_months")


@dataclass
class Constraints:
    """What the user needs; every field optional."""

    monthly_requests: float = 10_000
    """Expected requests per month (drives the cost comparison)."""
    monthly_budget: float | None = None
    """$ per month the arm may cost at that volume (one-off costs spread over the price horizon)."""
    latency_p95_s: float | None = None
    """Largest acceptable p95 latency per request, in seconds."""
    quality_target: float | None = None
    """Smallest acceptable main metric on the test split."""
    examples_available: int | None = None
    """Labelled examples the user has (arms that need more are ruled out)."""

    def __post_init__(self):
        if self.monthly_requests < 0:
            raise TuneoffError("must be >= 0", field="constraints.monthly_requests")
