"""The item matrix: every test item with each arm's raw output, parsed answer, per-item score and
flags. One source for the report's item explorer, the `--items` export (JSONL/CSV) and report.md's
"biggest disagreements"; `tuneoff diff` restricts it to the items that flipped.

Scores are whatever the task's metric gives per item (1/0 for labels, a value in its range for
free text; a mean over runs when an arm was repeated), so nothing here assumes right/wrong.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..compare.arms import ArmSummary, ItemFlag
from ..errors import TuneoffError


@dataclass
class ArmItems:
    """One arm's cells, aligned with `ItemMatrix.ids`; None where the arm did not score the item
    (adaptive evaluation stops arms early)."""

    name: str
    predictions: list[str | None]
    outputs: list[str | None]
    scores: list[float | None]
    flags: list[int]
    """`ItemFlag` bits per item (format violation, hallucinated label)."""


@dataclass
class ItemMatrix:
    """Test items x arms."""

    metric: str
    ids: list[str]
    inputs: list[str]
    targets: list[str]
    arms: list[ArmItems] = field(default_factory=list)
    note: str = ""
    """What the cells are when that is not obvious (repeats: answers of the first run, mean scores)."""

    @property
    def binary(self) -> bool:
        """Every score is 0 or 1: cells read as right/wrong instead of a value."""
        return all(s in (0.0, 1.0) for a in self.arms for s in a.scores if s is not None)

    def disagree(self, k: int) -> bool:
        """The arms that scored item k gave different parsed answers (the explorer's filter, too)."""
        answers = {_answer(a.predictions[k]) for a in self.arms if a.scores[k] is not None}
        return len(answers) > 1

    def spread(self, k: int) -> float:
        """Highest minus lowest score on item k across the arms that scored it."""
        scores = [a.scores[k] for a in self.arms if a.scores[k] is not None]
        return max(scores) - min(scores) if scores else 0.0

    def flagged(self, k: int) -> bool:
        return any(a.flags[k] for a in self.arms)

    def disagreeing_ids(self) -> list[str]:
        return [i for k, i in enumerate(self.ids) if self.disagree(k)]

    def rows(self) -> Iterable[dict]:
        """One dict per item: id, input, target, and per arm its output, answer, score and flags."""
        for k, item in enumerate(self.ids):
            yield {"id": item, "input": self.inputs[k], "target": self.targets[k],
                   "arms": {a.name: {"output": a.outputs[k] if a.outputs[k] is not None else a.predictions[k],
                                     "prediction": a.predictions[k], "score": a.scores[k],
                                     "flags": ItemFlag(a.flags[k]).names()} for a in self.arms}}

    def biggest_disagreements(self, n: int = 10) -> list[int]:
        """Indices of up to n items with the widest score spread, the most evenly split first (then item order)."""
        ks = [k for k in range(len(self.ids)) if self.disagree(k)]
        return sorted(ks, key=lambda k: (-self.spread(k), -self._balance(k)))[:n]

    def _balance(self, k: int) -> int:
        """How evenly the arms split on item k: arms on the less common side of its score range."""
        scores = [a.scores[k] for a in self.arms if a.scores[k] is not None]
        if not scores:
            return 0
        top, low = max(scores), min(scores)
        return min(sum(s == top for s in scores), sum(s == low for s in scores))

    def payload(self) -> dict:
        """Compact, columnar JSON for the explorer: a raw output equal to its parsed answer is sent once."""
        return {"metric": self.metric, "binary": self.binary, "note": self.note, "ids": self.ids,
                "inputs": self.inputs, "targets": self.targets,
                "arms": [{"name": a.name, "pred": a.predictions,
                          "out": [o if o != p else None for o, p in zip(a.outputs, a.predictions)],
                          "score": [None if s is None else round(s, 4) for s in a.scores], "flag": a.flags}
                         for a in self.arms]}


def _answer(prediction: str | None) -> str:
    return "\x00none" if prediction is None else prediction.strip()


def item_matrix(arms: Sequence[ArmSummary], only: set[str] | None = None) -> ItemMatrix:
    """The matrix of `arms` over the union of their items (first arm's order first), or over `only`."""
    order: dict[str, int] = {}
    inputs: list[str] = []
    targets: list[str] = []
    for a in arms:
        for k, item in enumerate(a.item_ids):
            if item not in order and (only is None or item in only):
                order[item] = len(order)
                inputs.append(a.inputs[k] if k < len(a.inputs) else "")
                targets.append(_target_text(a.targets[k]))
    m = ItemMatrix(arms[0].metric_name if arms else "", list(order), inputs, targets)
    for a in arms:
        n = len(order)
        cells = ArmItems(a.name, [None] * n, [None] * n, [None] * n, [0] * n)
        for k, item in enumerate(a.item_ids):
            if (j := order.get(item)) is None:
                continue
            cells.predictions[j] = a.predictions[k]
            cells.outputs[j] = a.outputs[k] if k < len(a.outputs) else a.predictions[k]
            cells.scores[j] = float(a.correct[k])
            cells.flags[j] = int(a.flags[k]) if k < len(a.flags) else 0
        m.arms.append(cells)
    if any(a.runs for a in arms):
        m.note = "repeated arms: answers of the first run, scores averaged over runs"
    return m


def _target_text(target) -> str:
    # several references (free-text tasks) are shown joined; a plain label is itself
    return " | ".join(map(str, target)) if isinstance(target, (list, tuple)) else str(target)


def explorer_json(m: ItemMatrix) -> str:
    """The payload as JSON that is safe inside <script type="application/json">: no `<`, `>` or `&`
    survives, so a `</script>` in a model output cannot end the element."""
    text = json.dumps(m.payload(), ensure_ascii=False, separators=(",", ":"))
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def write_items(m: ItemMatrix, path: Path) -> Path:
    """The matrix as JSONL (one item per line, arms nested) or CSV (one column per arm and field),
    chosen by the file's suffix."""
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".csv"):
        raise TuneoffError("the item export is JSONL or CSV", file=str(path), field="--items",
                           hint="name the file *.jsonl or *.csv")
    if suffix == ".jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in m.rows())
    else:
        text = _csv(m)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise TuneoffError(f"cannot write the item export: {exc.strerror}", file=str(path)) from None
    return path


def _csv(m: ItemMatrix) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    fields = ("output", "prediction", "score", "flags")
    w.writerow(["id", "input", "target"] + [f"{a.name}:{f}" for a in m.arms for f in fields])
    for r in m.rows():
        cells = []
        for a in m.arms:
            c = r["arms"][a.name]
            cells += [c["output"], c["prediction"], c["score"], ";".join(c["flags"])]
        w.writerow([r["id"], r["input"], r["target"]] + ["" if v is None else v for v in cells])
    return buf.getvalue()
