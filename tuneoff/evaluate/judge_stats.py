"""How far a judge can be trusted, from its own verdicts: position flips, self-agreement, agreement with
the main reference metric and with people. Pure functions over verdicts, so each is tested on its own.

A weak judge looks weak here: one that always prefers the first position flips on every pair it
separates, one that guesses disagrees with itself on a sampled repeat, and one that grades at random
orders the arms unlike the metric (concordance near 0.5) and unlike people.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Mapping, Sequence

from ..errors import TuneoffError

FIRST, SECOND, TIE = "first", "second", "tie"


def combine_orders(ab: str | None, ba: str | None) -> tuple[str | None, bool]:
    """The verdict on (A, B) from the two orders: `ab` with A shown first, `ba` with B shown first.
    Returns ("A" | "B" | "tie" | None, flipped). A verdict that follows the position (first both times,
    or second both times) is a position flip and counts as a tie; None when either order was off-format."""
    if ab is None or ba is None:
        return None, False
    a_wins = {FIRST: "A", SECOND: "B", TIE: TIE}[ab]
    b_order = {FIRST: "B", SECOND: "A", TIE: TIE}[ba]
    if a_wins == b_order:
        return a_wins, False
    flipped = TIE not in (a_wins, b_order)  # one order a winner, the other a tie: lean, not a flip
    return TIE, flipped


def rate(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


class Tally:
    """Agreement counts overall and per arm (each comparison counts for both its arms)."""

    def __init__(self):
        self.agree, self.pairs = 0.0, 0
        self.arms: dict[str, list[float]] = {}

    def add(self, value: float, *arms: str) -> None:
        self.agree, self.pairs = self.agree + value, self.pairs + 1
        for arm in arms:
            self.arms.setdefault(arm, []).append(value)

    def result(self) -> dict:
        return {"value": self.agree / self.pairs if self.pairs else None, "pairs": self.pairs,
                "by_arm": {a: sum(v) / len(v) for a, v in self.arms.items()}}


def concordance(judge: Mapping[tuple[str, str], float], metric: Mapping[tuple[str, str], float]) -> dict:
    """For each item, each pair of arms the metric separates: does the judge order them the same way?
    `judge`/`metric`: (item id, arm) -> score. Judge ties count half (they neither agree nor disagree)."""
    by_item: dict[str, list[str]] = {}
    for item, arm in judge:
        if (item, arm) in metric:
            by_item.setdefault(item, []).append(arm)
    tally = Tally()
    for item, arms in by_item.items():
        for a, b in combinations(sorted(arms), 2):
            m = metric[(item, a)] - metric[(item, b)]
            if m == 0:
                continue
            j = judge[(item, a)] - judge[(item, b)]
            tally.add(0.5 if j == 0 else float((j > 0) == (m > 0)), a, b)
    return tally.result()


def pairwise_concordance(verdicts: Mapping[tuple[str, str, str], str],
                         metric: Mapping[tuple[str, str], float]) -> dict:
    """Pairwise mode: (item, arm A, arm B) -> "A" | "B" | "tie" against the metric's order of A and B."""
    tally = Tally()
    for (item, a, b), verdict in verdicts.items():
        if (item, a) not in metric or (item, b) not in metric or metric[(item, a)] == metric[(item, b)]:
            continue
        metric_a = metric[(item, a)] > metric[(item, b)]
        tally.add(0.5 if verdict == TIE else float((verdict == "A") == metric_a), a, b)
    return tally.result()


def by_arm(flags: Sequence[tuple[Sequence[str], bool]]) -> dict:
    """A rate overall and per arm from (arms concerned, flag) pairs."""
    arms: dict[str, list[bool]] = {}
    for names, flag in flags:
        for arm in names:
            arms.setdefault(arm, []).append(flag)
    return {"value": rate([f for _, f in flags]), "n": len(flags),
            "by_arm": {a: rate(v) for a, v in arms.items()}}


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Rank agreement of two orderings of the same arms (scipy's tau-b); None with under 3 arms."""
    from scipy.stats import kendalltau

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(kendalltau(x, y).statistic)


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(spearmanr(x, y).statistic)


def cohen_kappa(x: Sequence, y: Sequence) -> float | None:
    """Agreement beyond chance of two raters on the same items (categorical verdicts)."""
    n = len(x)
    if not n:
        return None
    observed = sum(a == b for a, b in zip(x, y)) / n
    cats = set(x) | set(y)
    expected = sum((list(x).count(c) / n) * (list(y).count(c) / n) for c in cats)
    return (observed - expected) / (1 - expected) if expected < 1 else None


# -- human ratings ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rating:
    item: str
    arm: str
    rating: float


def _as_rating(value, file: str, line: int) -> float:
    text = str(value).strip().lower()
    if text in ("pass", "yes", "true"):
        return 1.0
    if text in ("fail", "no", "false"):
        return 0.0
    try:
        return float(text)
    except ValueError:
        raise TuneoffError(f"rating '{value}' is not a number or pass/fail", file=file, line=line,
                           field="rating") from None


def _rows(path: Path) -> list[tuple[int, dict]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".jsonl", ".json"):
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append((i, json.loads(line)))
                except ValueError as exc:
                    raise TuneoffError(f"not valid JSON: {exc}", file=str(path), line=i) from None
        return rows
    dialect = "excel-tab" if path.suffix == ".tsv" else "excel"
    return [(i + 2, row) for i, row in enumerate(csv.DictReader(text.splitlines(), dialect=dialect))]


def read_ratings(path: str | Path, items: set[str], arms: set[str]) -> list[Rating]:
    """Human ratings (`id`, `arm`, `rating` per row); an id that is no judged test item, an arm that is
    not in the experiment, a missing field: one error naming the file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise TuneoffError("ratings file not found", file=str(path), field="judge.ratings")
    out = []
    for line, row in _rows(path):
        if not isinstance(row, dict):
            raise TuneoffError("a rating must be an object with id, arm, rating", file=str(path), line=line)
        for key in ("id", "arm", "rating"):
            if row.get(key) in (None, ""):
                raise TuneoffError("missing", file=str(path), line=line, field=key)
        item, arm = str(row["id"]), str(row["arm"])
        if item not in items:
            raise TuneoffError(f"id '{item}' is not one of the judged test items", file=str(path), line=line,
                               field="id", hint="ratings are matched to test items by the task's id column")
        if arm not in arms:
            raise TuneoffError(f"no arm named '{arm}'", file=str(path), line=line, field="arm",
                               hint=f"arms: {', '.join(sorted(arms))}")
        out.append(Rating(item, arm, _as_rating(row["rating"], str(path), line)))
    if not out:
        raise TuneoffError("no ratings in the file", file=str(path), field="judge.ratings")
    return out


def human_agreement(judge: Mapping[tuple[str, str], float], ratings: Sequence[Rating], binary: bool) -> dict:
    """The judge against people on the outputs both rated: Spearman (grades) or Cohen's kappa (pass/fail),
    and how often they order two arms' outputs for an item the same way."""
    both = [(judge[(r.item, r.arm)], r.rating) for r in ratings if (r.item, r.arm) in judge]
    human = {(r.item, r.arm): r.rating for r in ratings}
    out = {"n": len(both), "concordance": concordance(judge, human)}
    if binary:
        out["kappa"] = cohen_kappa([j >= 0.5 for j, _ in both], [h >= 0.5 for _, h in both])
        out["exact"] = rate([(j >= 0.5) == (h >= 0.5) for j, h in both])
    else:
        out["spearman"] = spearman([j for j, _ in both], [h for _, h in both])
        out["exact"] = rate([round(j) == round(h) for j, h in both])
    return out
