"""Distillation's first half: a teacher arm answers training inputs, and its answers become the targets
a student is fine-tuned on (`finetune: {teacher: ARM, n_unlabelled: N}`; the runner does the second half).

The teacher sees each input as an unlabelled item: prompts never carry an item's own target (strategies
leave it out, and an item is never its own demo). The targets are kept on the stored predictions only so
the report can say how often the teacher's answers were right: what the student learns from.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from ..data import Example
from ..errors import TuneoffError
from ..models.base import Backend
from ..prompting.arm import PromptArm
from ..store import Store
from .engine import evaluate


def teacher_answers(backend: Backend, arm: PromptArm, items: Sequence[Example], task, store: Store,
                    experiment_id: int | None = None, console=None) -> tuple[int, list[Example]]:
    """(the teacher's run id, `items` with the teacher's answers as targets). Items it gave no usable
    answer for (a format violation) are left out: a student must not learn an empty target. Calls are
    cached and resumable like any evaluation's (run kind `distill`)."""
    items = list(items)
    result = evaluate(backend, arm, items, task, store=store, split="train", kind="distill", console=console,
                      experiment_id=experiment_id)
    answered: list[Example] = []
    for row in result.predictions:
        if row["prediction"] is not None and str(row["prediction"]).strip() and not row["extra"].get("violation"):
            answered.append(dataclasses.replace(items[row["item"]], target=str(row["prediction"])))
    if not answered:
        raise TuneoffError(f"the teacher arm '{arm.name}' gave no usable answer for {len(items)} training inputs",
                           field="finetune.teacher", hint="check the teacher arm's own results (format violations)")
    return result.run_id, answered
