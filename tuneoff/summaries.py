"""From the store to the comparison: every number in the report is a query over stored runs.

`comparison_from_store(store, experiment_id)` rebuilds the `Comparison` of a finished experiment
(arm summaries, curves, consistency, flexibility) without touching a model, so reports can be
re-rendered later and tests can recompute the figures from per-item predictions.
"""

from __future__ import annotations

import json

from .compare import ArmSummary, Comparison, Curve, build_comparison
from .experiment import ArmEntry, Experiment
from .specs import from_dict
from .store import Store


def experiment_spec(store: Store, experiment_id: int) -> Experiment:
    row = store.experiment(experiment_id)
    return from_dict(Experiment, json.loads(row["spec_json"]), "", f"store experiment {experiment_id}")


def comparison_from_store(store: Store, experiment_id: int) -> Comparison:
    exp = experiment_spec(store, experiment_id)
    links = store.linked_runs(experiment_id)
    by_role: dict[str, dict[str, list]] = {}
    for link in links:
        by_role.setdefault(link["role"], {}).setdefault(link["arm"], []).append(link)
    saved = json.loads(store.experiment(experiment_id)["summary_json"] or "{}")
    sizes = saved.get("sizes", {})
    arms = [arm_summary(store, exp, entry, by_role, sizes) for entry in exp.arms
            if entry.name in by_role.get("arm", {})]
    curves = curves_from_links(store, exp, by_role.get("curve", {}))
    latencies = {a.name: [c["latency_s"] for c in store.predictions_with_costs(a.run_id)] for a in arms}
    phases = saved.get("phases", {})
    comparison = build_comparison(exp.name, exp.task.name, exp.model, arms, exp.prices, exp.constraints, curves,
                                  latencies, phases)
    comparison.experiment_id = experiment_id
    return comparison


def _metric(metrics, name: str, default: float = 0.0) -> float:
    row = metrics.get(name)
    return default if row is None or row["value"] is None else float(row["value"])


def arm_summary(store: Store, exp: Experiment, entry: ArmEntry, by_role: dict, sizes: dict) -> ArmSummary:
    """One arm's column, from its evaluation run (and its training / optimisation / probe runs)."""
    run_id = by_role["arm"][entry.name][-1]["run_id"]
    run, metrics = store.run(run_id), store.metrics(run_id)
    rows = store.predictions_with_costs(run_id)
    spec = json.loads(run["spec_json"])
    main = metrics[exp.task.metric]
    summary = ArmSummary(
        name=entry.name, kind=entry.kind, model=run["model"], metric_name=exp.task.metric,
        metric=main["value"], ci_low=main["ci_low"], ci_high=main["ci_high"],
        item_ids=[r["example_id"] for r in rows], correct=[float(r["correct"] or 0.0) for r in rows],
        predictions=[r["prediction"] for r in rows], targets=[r["target"] for r in rows],
        labels=exp.task.label_list(), inputs=[r["input"] for r in rows], run_id=run_id,
        format_violation_rate=_metric(metrics, "format_violation_rate"),
        hallucinated_label_rate=_metric(metrics, "hallucinated_label_rate"),
        tokens_in=_metric(metrics, "tokens_in_mean"), tokens_out=_metric(metrics, "tokens_out_mean"),
        latency_p50=_metric(metrics, "latency_p50"), latency_p95=_metric(metrics, "latency_p95"),
        seconds_per_request=_metric(metrics, "seconds_per_item"),
        eval_seconds=_metric(metrics, "seconds_per_item") * len(rows))
    shots = int(spec.get("shots") or 0)
    summary.examples_used, summary.examples_note = shots, "demos per request"
    # demos drawn by similarity, at random or by label need the whole pool to draw from
    pool = sizes.get("train", shots) if spec.get("demo_selection", "first") != "first" else shots
    summary.examples_needed = pool if shots else 0
    _add_training(store, summary, entry, by_role, shots)
    _add_optimisation(store, summary, entry, by_role, sizes)
    _add_consistency(store, summary, entry, by_role)
    _add_flexibility(store, summary, entry, by_role)
    return summary


def _add_training(store: Store, s: ArmSummary, entry: ArmEntry, by_role: dict, shots: int) -> None:
    name = entry.name if entry.kind == "finetune" else entry.finetuned
    link = by_role.get("finetune", {}).get(name) if name else None
    if not link:
        return
    stats = json.loads(store.run(link[-1]["run_id"])["summary_json"])
    s.trainable_parameters, s.total_parameters = stats["trainable_parameters"], stats["total_parameters"]
    s.setup_seconds, s.training_tokens = stats["seconds"], stats["tokens"]
    s.examples_used = stats["examples"]
    s.examples_note = f"training examples{f' + {shots} demos per request' if shots else ''}"
    s.examples_needed = stats["examples"]


def _add_optimisation(store: Store, s: ArmSummary, entry: ArmEntry, by_role: dict, sizes: dict) -> None:
    link = by_role.get("optimise", {}).get(entry.name)
    if not link:
        return
    run = store.run(link[-1]["run_id"])
    summary = json.loads(run["summary_json"])
    s.optimise_calls = int(summary.get("calls_spent", 0))
    s.setup_seconds += (run["finished_at"] or run["started_at"]) - run["started_at"]
    s.examples_note += f" (optimised on dev with {s.optimise_calls} calls)"
    s.examples_needed = max(s.examples_needed, sizes.get("train", 0)) + sizes.get("dev", 0)


def _add_consistency(store: Store, s: ArmSummary, entry: ArmEntry, by_role: dict) -> None:
    link = by_role.get("consistency", {}).get(entry.name)
    if link:
        m = store.metrics(link[-1]["run_id"])
        s.agreement, s.metric_spread = _metric(m, "agreement"), _metric(m, "metric_std")


def _add_flexibility(store: Store, s: ArmSummary, entry: ArmEntry, by_role: dict) -> None:
    flex = by_role.get("flexibility", {})
    # a combined arm runs on its fine-tune's weights: what those weights still serve is measured once
    link, via = flex.get(entry.name), None
    if not link and entry.finetuned:
        link, via = flex.get(entry.finetuned), entry.finetuned
    base = by_role.get("flexibility_base", {}).get("base")
    if link and base:
        tuned, ref = store.run(link[-1]["run_id"]), store.run(base[-1]["run_id"])
        metric = json.loads(ref["summary_json"]).get("main", {})
        score = json.loads(tuned["summary_json"]).get("main", {}).get("value")
        s.flexibility = {"task": ref["task"], "score": score, "base_score": metric.get("value"),
                         "drop": (metric.get("value") or 0.0) - (score or 0.0), "weights_of": via}


def curves_from_links(store: Store, exp: Experiment, curve_links: dict) -> list[Curve]:
    curves = []
    for arm, links in curve_links.items():
        entry = exp.arm(arm)
        points = []
        for link in links:
            m = store.metrics(link["run_id"])[exp.task.metric]
            points.append((int(link["x"]), m["value"], m["ci_low"], m["ci_high"]))
        curves.append(Curve(arm, "n_train" if entry.kind == "finetune" else "shots", sorted(points)))
    return curves
