"""Rows on what free text and structured replies are worth beyond the main metric: grounding in the
input, the task's output constraints and field scores (`tuneoff.evaluate.checks`), and the judge pass.

The judge rows come from the experiment's `judge` run (`tuneoff.experiment.judging`): the per-arm
scores, and beside them the figures that say how far to trust them. The judge's cost is its own row,
never added to the arms' cost: grading is evaluation work, not serving.
"""

from __future__ import annotations

import json

from ..store import Store


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def judge_summary(store: Store, run_id: int) -> dict:
    """The stored pass: spec, scores, reliability, cost (the judge run's summary)."""
    run = store.run(run_id)
    return {**json.loads(run["summary_json"] or "{}"), "spec": json.loads(run["spec_json"] or "{}"),
            "model": run["model"]}


def judge_rows(judge: dict, arms: list[str], metric: str) -> list[tuple[str, dict[str, str]]]:
    """Rows: the judge's score per arm, its reliability on each arm's outputs, and its cost."""
    spec, rel, cost = judge.get("spec", {}), judge.get("reliability", {}), judge.get("cost", {})
    mode = spec.get("mode", "pointwise")
    what = "win rate (ties half)" if mode == "pairwise" else f"grade {spec.get('scale', '1-5')}"
    label = f"Judge: {spec.get('model', judge.get('model', ''))}, {mode} {what}"

    def score(arm: str) -> str:
        s = judge.get("scores", {}).get(arm)
        if not s or s.get("value") is None:
            return "n/a (no verdict)"
        return f"{s['value']:.2f} [{s['ci_low']:.2f}, {s['ci_high']:.2f}] (n {s['n']})"

    def part(key: str, arm: str) -> float | None:
        value = rel.get(key)
        return value.get("by_arm", {}).get(arm) if isinstance(value, dict) else None

    def reliability(arm: str) -> str:
        parts = [f"position flips {_pct(part('position_flip_rate', arm))}" if mode == "pairwise" else "",
                 f"self-agreement {_pct(part('self_agreement', arm))}",
                 f"agrees with {metric} {_pct(part('metric_agreement', arm))}",
                 f"off-format {_pct(part('off_format_rate', arm))}"]
        return "; ".join(p for p in parts if p)

    overall = [f"position flips {_pct((rel.get('position_flip_rate') or {}).get('value'))}" if mode == "pairwise"
               else "", f"self-agreement {_pct((rel.get('self_agreement') or {}).get('value'))}",
               f"agrees with {metric} on {_pct((rel.get('metric_agreement') or {}).get('value'))} of "
               f"{(rel.get('metric_agreement') or {}).get('pairs', 0)} pairs",
               "arm ranking tau " + (f"{rel['arm_rank_tau']:.2f}" if rel.get("arm_rank_tau") is not None else "n/a"),
               _human(rel.get("human"))]
    rows = [(label, {a: score(a) for a in arms}),
            ("Judge reliability (all arms: " + "; ".join(p for p in overall if p) + ")",
             {a: reliability(a) for a in arms})]
    calls = cost.get("calls", 0)
    rows.append((f"Judge cost (apart from the arms'): {calls} calls, {cost.get('tokens_in', 0):,} tokens in, "
                 f"{cost.get('machine_seconds', 0.0):.0f} s, ${cost.get('usd', 0.0):.4f}", {a: "" for a in arms}))
    return rows


def _human(human: dict | None) -> str:
    if not human:
        return "human ratings: none given"
    rho = human.get("spearman")
    kappa = human.get("kappa")
    extra = f", Spearman {rho:.2f}" if rho is not None else f", kappa {kappa:.2f}" if kappa is not None else ""
    return f"agrees with human ratings on {_pct(human.get('value'))} of pairs ({human.get('n', 0)} rated{extra})"


def _rate_cell(m, name: str) -> str | None:
    row = m.get(name)
    if row is None or row["value"] is None:
        return None
    ci = f" [{_pct(row['ci_low'])}, {_pct(row['ci_high'])}]" if row["ci_low"] is not None else ""
    return f"{100 * row['value']:.1f}%{ci}"


def check_rows(store: Store, arms: list) -> list[tuple[str, dict[str, str]]]:
    """Grounding and output-format rows for the arms whose evaluation stored those checks."""
    metrics = {a.name: store.metrics(a.run_id) for a in arms if a.run_id is not None}
    rows = []
    if any("unsupported_content_rate" in m for m in metrics.values()):
        rows.append(("Unsupported content (replies stating a number, name or quote their input lacks; "
                     "lower is better)", {a: _grounding_cell(m) for a, m in metrics.items()}))
    if any("constraint_violation_rate" in m for m in metrics.values()):
        rows.append(("Output format (task's constraints; lower is better) and JSON fields",
                     {a: _format_cell(m) for a, m in metrics.items()}))
    return rows


def _grounding_cell(m) -> str:
    main = _rate_cell(m, "unsupported_content_rate")
    if main is None:
        return "not checked"
    units = m["unsupported_unit_share"]["value"] if "unsupported_unit_share" in m else None
    refs = _rate_cell(m, "unreferenced_content_rate")
    examples = json.loads(m["unsupported_content_rate"]["extra_json"] or "{}").get("examples", [])
    text = f"{main}; {_pct(units)} of units"
    if "slot_coverage" in m:
        text += (f"; input fields stated {_pct(m['slot_coverage']['value'])}, missing "
                 f"{_pct(m['slot_missing_share']['value'])}, contradicted {_pct(m['slot_contradicted_share']['value'])}")
    text += f"; not in any reference {refs}" if refs else ""
    return text + (f"; e.g. {', '.join(examples[:3])}" if examples else "")


def _format_cell(m) -> str:
    parts = [f"violations {_rate_cell(m, 'constraint_violation_rate')}"]
    if "schema_violation_rate" in m:
        parts.append(f"schema {_rate_cell(m, 'schema_violation_rate')}")
    if "field_f1" in m:
        parts.append(f"field F1 {m['field_f1']['value']:.2f} (P {m['field_precision']['value']:.2f}, "
                     f"R {m['field_recall']['value']:.2f})")
        per = [(name.split(":", 1)[1], row["value"]) for name, row in m.items() if name.startswith("field:")]
        parts += [f"{field} {value:.2f}" for field, value in per]
        rouge = [(name.split(":", 1)[1], row["value"]) for name, row in m.items() if name.startswith("field_rougeL:")]
        parts += [f"{field} ROUGE-L {value:.3f}" for field, value in rouge]
    return "; ".join(parts)
