"""Checks of a run's replies beyond the main metric: grounding in the input (free text) and the task's
output constraints (JSON Schema, regex, word limit) with field-level scores for JSON targets.

Computed from the store like every summary (`summary.summarise` calls `content_checks`), and written
back onto each prediction's `extra` (`ungrounded`, `unsupported`, `format`) so the item explorer and
`tuneoff report --items` show which items were flagged and why.
"""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np

from ..grounding import field_values, ground, parse_slots, slot_coverage, summarise_grounding
from ..metrics import MetricValue
from ..store import Store
from ..structured import OutputFormat, corpus_field_scores, parse_json


def _rate(name: str, flags: Sequence[bool], seed: int = 0, **extra) -> MetricValue:
    """A share with its bootstrap 95% CI over items (lower is better for every rate here)."""
    v = np.asarray(flags, dtype=float)
    if not len(v):
        return MetricValue(name, None, extra=extra)
    idx = np.random.default_rng(seed).integers(0, len(v), size=(1000, len(v)))
    low, high = np.quantile(v[idx].mean(1), [0.025, 0.975])
    return MetricValue(name, float(v.mean()), float(low), float(high), extra={"count": int(v.sum()), **extra})


def reply_of(row) -> str:
    return row["prediction"] if row["prediction"] is not None else row["output"]


def stated_text(reply: str | None) -> str:
    """What a reply states: a JSON reply's string and number values (its keys and quotes are syntax,
    not content), else the reply as written."""
    try:
        value = parse_json(reply)
    except ValueError:
        return reply or ""
    from ..structured import leaves

    return "\n".join(str(v) for v in leaves(value).values() if isinstance(v, (str, int, float)) and v is not True)


def grounding_values(rows: Sequence, extras: Sequence[dict], references: Sequence[list[str]],
                     seed: int = 0) -> list[MetricValue]:
    """Unsupported content per reply (README "Grounding"): the share of replies stating a number, name,
    tag or quote their input does not, the unit share, and the same against the references."""
    results = [ground(stated_text(reply_of(r)), r["input"], [stated_text(x) for x in refs])
               for r, refs in zip(rows, references)]
    for extra, g in zip(extras, results):
        extra["ungrounded"] = g.ungrounded
        extra["unsupported"] = [u.text for u in g.unsupported_by_input]
    s = summarise_grounding(results, with_references=True)
    return slot_values(rows, extras) + [_rate("unsupported_content_rate", [g.ungrounded for g in results], seed, examples=s.examples),
            MetricValue("unsupported_unit_share", s.unsupported_unit_share, extra={"n": s.n}),
            _rate("unreferenced_content_rate", [bool(g.unsupported_by_references) for g in results], seed)]


def slot_values(rows: Sequence, extras: Sequence[dict]) -> list[MetricValue]:
    """Data-to-text (inputs that are fields: JSON, `key[value]`, `key: value` lines): the share of the
    input's fields each reply states, and the shares it leaves out or contradicts (states another value
    the field takes elsewhere in the split). Nothing when most inputs are not fields."""
    slots = [parse_slots(r["input"]) for r in rows]
    if sum(bool(s) for s in slots) < max(1, len(rows) // 2):
        return []
    vocabulary = field_values(r["input"] for r in rows)
    covered = missing = contradicted = 0
    for row, extra, fields in zip(rows, extras, slots):
        c = slot_coverage(reply_of(row), fields, vocabulary)
        extra["slots_missing"], extra["slots_contradicted"] = list(c.missing), list(c.contradicted)
        covered, missing, contradicted = covered + len(c.covered), missing + len(c.missing), contradicted + len(c.contradicted)
    total = max(covered + missing + contradicted, 1)
    return [MetricValue("slot_coverage", covered / total, extra={"fields": total}),
            MetricValue("slot_missing_share", missing / total), MetricValue("slot_contradicted_share", contradicted / total)]


def format_values(rows: Sequence, extras: Sequence[dict], fmt: OutputFormat, seed: int = 0) -> list[MetricValue]:
    """Each reply against the task's output constraints; field scores when the targets are JSON."""
    replies = [reply_of(r) for r in rows]
    found = [fmt.violations(reply) for reply in replies]
    for extra, v in zip(extras, found):
        extra["format"] = v
    values = [_rate("constraint_violation_rate", [bool(v) for v in found], seed)]
    if fmt.json_schema is not None:
        values.append(_rate("schema_violation_rate", [any(x in ("json", "empty") or x.startswith("schema") for x in v)
                                                      for v in found], seed))
        targets = [r["target"] for r in rows]
        if all(_is_json(t) for t in targets):
            scores = corpus_field_scores(replies, targets)
            values += [MetricValue(name, value) for name, value in scores.items()]
    return values


def _is_json(text: str) -> bool:
    try:
        parse_json(text)
    except ValueError:
        return False
    return True


def references_of(row, extra: dict) -> list[str]:
    """A stored prediction's references: the list kept when there were several, else its target."""
    return list(extra.get("references") or [row["target"]])


def content_checks(store: Store, run_id: int, rows: Sequence, extras: list[dict], ctx, seed: int = 0
                   ) -> list[MetricValue]:
    """The run's grounding and output-constraint figures (when the task asks for them); each item's
    flags are written back onto its stored prediction."""
    values: list[MetricValue] = []
    if ctx.grounding:
        values += grounding_values(rows, extras, [references_of(r, e) for r, e in zip(rows, extras)], seed)
    if ctx.output is not None:
        values += format_values(rows, extras, ctx.output, seed)
    if values:
        store.update_prediction_extras(run_id, [(r["item"], e) for r, e in zip(rows, extras)])
    return values
