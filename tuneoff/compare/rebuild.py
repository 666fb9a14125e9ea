"""From the store to the comparison: every number in the report is a query over stored runs.

`comparison_from_store(store, experiment_id)` rebuilds the `Comparison` of a finished experiment
(arm summaries, curves, consistency, flexibility) without touching a model, so reports can be
re-rendered later and tests can recompute the figures from per-item predictions. Runs are found
through their `Role` links and read through the typed summaries of `tuneoff.records`.
"""

from __future__ import annotations

import json

import numpy as np

from ..config.experiment import ArmEntry, ArmKind, Experiment, build_prompt_arm
from ..config.specs import from_dict
from ..records import (AdaptiveSummary, EvalSummary, ExperimentRuns, ExperimentSummary, OptimiseSummary, ProbeSummary,
                       Role, TrainStats, TuningSummary)
from ..store import Store
from ..evaluate.summary import stored_stats
from ..metrics import repeated_ci
from .arms import ArmSummary, Curve, ItemFlag, MetricScore, OutOfDomain, items_hash, scored_items
from .costs import ArmCost, per_request
from .comparison import Comparison, build_comparison
from .quality import check_rows, judge_rows, judge_summary
from .stats import majority_rate

LENGTHS = ("output_words_mean", "reference_words_mean", "length_ratio", "truncated_rate")
"""The stored length and truncation figures of a free-text run (`metrics.usage.length_metrics`)."""

Links = ExperimentRuns
"""The experiment's linked runs by role and arm, in link order (the last one counts)."""


def experiment_spec(store: Store, experiment_id: int) -> Experiment:
    row = store.experiment(experiment_id)
    return from_dict(Experiment, json.loads(row["spec_json"]), "", f"store experiment {experiment_id}")


def comparison_from_store(store: Store, experiment_id: int) -> Comparison:
    exp = experiment_spec(store, experiment_id)
    by_role = ExperimentRuns.read(store, experiment_id)
    saved = ExperimentSummary.from_json(store.experiment(experiment_id)["summary_json"])
    arms = [arm_summary(store, exp, entry, by_role, saved.sizes) for entry in exp.arms
            if entry.name in by_role.arms(Role.ARM)]
    add_distillation(store, exp, arms, by_role)
    add_adaptive(store, arms, by_role)
    curves = curves_from_links(store, exp, by_role.arms(Role.CURVE))
    latencies = {a.name: a.probe.single_seconds if a.probe else
                 [c["latency_s"] for c in store.predictions_with_costs(a.run_id)] for a in arms}
    comparison = build_comparison(exp.name, exp.task.name, exp.model, arms, exp.prices, exp.constraints, curves,
                                  latencies, saved.phases)
    comparison.experiment_id = experiment_id
    comparison.peak_rss_mb = dict(saved.peak_rss_mb)
    comparison.rows += check_rows(store, arms)
    judge_run = by_role.last(Role.JUDGE, "")
    if judge_run is not None:
        comparison.judge = judge_summary(store, judge_run)
        comparison.rows += judge_rows(comparison.judge, [a.name for a in arms], exp.task.metric)
    comparison.settings = experiment_settings(store, experiment_id, exp, arms, by_role)
    comparison.environment = dict(saved.environment)
    comparison.created_at = store.experiment(experiment_id)["created_at"]
    comparison.dtype = str(exp.dtype)
    return comparison


def flatten(value, prefix: str = "") -> dict[str, str]:
    """Dotted keys -> JSON text of each leaf; a list of named dicts (arms) is keyed by name."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
        out = {}
        for v in value:
            out.update(flatten({k: x for k, x in v.items() if k != "name"}, f"{prefix}.{v['name']}"))
        return out
    return {prefix: json.dumps(value, sort_keys=True, default=str)}


def experiment_settings(store: Store, experiment_id: int, exp: Experiment, arms: list[ArmSummary],
                        by_role: Links) -> dict[str, str]:
    """What `tuneoff diff` compares: the experiment as run (its `--set` overrides applied), each arm's
    configuration as evaluated (after tuning on dev), the model it ran, its training run's fingerprint
    (training data and options), and a hash of the test items."""
    spec = json.loads(store.experiment(experiment_id)["spec_json"])
    spec.pop("output", None)  # where the files went says nothing about the result
    settings = flatten(spec)
    for a in arms:
        run = store.run(a.run_id)
        settings[f"{a.name}: model as run"] = json.dumps(run["model"])
        settings.update(flatten(json.loads(run["spec_json"]), f"{a.name}: as evaluated"))
        entry = exp.arm(a.name)
        train = _last(by_role, Role.FINETUNE, a.name if entry.kind is ArmKind.FINETUNE else entry.finetuned)
        if train is not None:
            settings[f"{a.name}: training data + options (fingerprint)"] = json.dumps(store.run(train)["fingerprint"][:16])
    settings["test items (hash of ids, inputs, targets)"] = json.dumps(items_hash(scored_items(arms)))
    return settings


def _metric(metrics, name: str, default: float = 0.0) -> float:
    row = metrics.get(name)
    return default if row is None or row["value"] is None else float(row["value"])


def _last(by_role: Links, role: Role, arm: str | None) -> int | None:
    """The run id last linked to `arm` in `role`, if any."""
    return by_role.last(role, arm)


def arm_summary(store: Store, exp: Experiment, entry: ArmEntry, by_role: Links, sizes: dict) -> ArmSummary:
    """One arm's column, from its evaluation run (and its training / optimisation / probe runs)."""
    run_id = _last(by_role, Role.ARM, entry.name)
    run, metrics = store.run(run_id), store.metrics(run_id)
    rows = store.predictions_with_costs(run_id)
    spec = json.loads(run["spec_json"])
    main = metrics[exp.task.metric]
    extras = [json.loads(r["extra_json"] or "{}") for r in rows]
    summary = ArmSummary(
        name=entry.name, kind=entry.kind, model=run["model"], metric_name=exp.task.metric,
        metric=main["value"], ci_low=main["ci_low"], ci_high=main["ci_high"],
        item_ids=[r["example_id"] for r in rows], correct=[float(r["correct"] or 0.0) for r in rows],
        predictions=[r["prediction"] for r in rows], targets=[r["target"] for r in rows],
        labels=exp.task.label_list(), inputs=[r["input"] for r in rows], run_id=run_id,
        outputs=[r["output"] for r in rows], flags=[ItemFlag.of(e) for e in extras],
        format_violation_rate=_metric(metrics, "format_violation_rate"),
        hallucinated_label_rate=_metric(metrics, "hallucinated_label_rate"),
        tokens_in=_metric(metrics, "tokens_in_mean"), tokens_out=_metric(metrics, "tokens_out_mean"),
        latency_p50=_metric(metrics, "latency_p50"), latency_p95=_metric(metrics, "latency_p95"),
        seconds_per_request=_metric(metrics, "seconds_per_item"),
        eval_seconds=_metric(metrics, "seconds_per_item") * len(rows),
        prices=exp.prices_of(entry) if exp.prices_of(entry) is not exp.prices else None,
        stats=stored_stats(exp.task.metric, rows, extras).tolist(),
        secondary={name: MetricScore(name, metrics[name]["value"], metrics[name]["ci_low"], metrics[name]["ci_high"],
                                     stored_stats(name, rows, extras).tolist())
                   for name in exp.task.secondary_metrics if name in metrics},
        lengths={name: metrics[name]["value"] for name in LENGTHS if name in metrics})
    summary.ran_on = EvalSummary.from_json(run["summary_json"]).ran_on if run["summary_json"] else ""
    shots = int(spec.get("shots") or 0)
    summary.examples_used, summary.examples_note = shots, "demos per request"
    # demos drawn by similarity, at random or by label need the whole pool to draw from
    pool = sizes.get("train", shots) if spec.get("demo_selection", "first") != "first" else shots
    summary.label_parts = {"demo pool": pool} if shots else {}
    if entry.repeat_draws():
        _add_repeats(store, summary, by_role, exp.task.metric)
    else:  # nothing in the arm is random: repeats (older stores ran them) replayed the same answers
        summary.deterministic = exp.repeats_of(entry) > 1 or bool(by_role.of(Role.REPEAT, entry.name))
    _add_training(store, summary, entry, by_role, shots)
    _add_optimisation(store, summary, entry, by_role, sizes, exp)
    _add_tuning(store, summary, entry, by_role, sizes)
    _charge_labels(summary)
    _add_consistency(store, summary, entry, by_role)
    _add_flexibility(store, summary, entry, by_role)
    _add_probe(store, summary, entry, by_role)
    _add_ood(store, summary, entry, by_role, exp.task.metric)
    return summary


def _add_repeats(store: Store, s: ArmSummary, by_role: Links, metric: str) -> None:
    """Fold the arm's repeats in: mean metric, spread, a CI over runs and items (the metric itself,
    recomputed from resampled statistics: the CI has the metric's scale), collapsed runs, and each run's
    per-item statistics (the paired tests and the verdict's stability resample seeds with items)."""
    links = sorted(by_role.of(Role.REPEAT, s.name), key=lambda link: link.x)
    if not links:
        return
    position = {item: k for k, item in enumerate(s.item_ids)}
    first = np.asarray(s.item_stats(), dtype=float)
    tensor, correct = [first], [list(s.correct)]
    s.runs = [s.metric]
    for link in links:
        rows = store.predictions(link.run_id)
        extras = [json.loads(r["extra_json"] or "{}") for r in rows]
        stats, run_correct = np.zeros_like(first), [0.0] * len(s.item_ids)
        for r, row_stats in zip(rows, stored_stats(metric, rows, extras)):
            if r["example_id"] in position:
                stats[position[r["example_id"]]] = row_stats
                run_correct[position[r["example_id"]]] = float(r["correct"] or 0.0)
        tensor.append(stats)
        correct.append(run_correct)
        s.runs.append(store.metrics(link.run_id)[metric]["value"])
    runs = np.array(tensor)
    s.metric, s.metric_std = float(np.mean(s.runs)), float(np.std(s.runs, ddof=1))
    s.ci_low, s.ci_high = repeated_ci(runs, s.measure.total)
    s.run_stats, s.run_scores = runs.tolist(), correct
    # per-item means over runs: the per-item view of the arm (statistics and [0, 1] scores)
    s.stats, s.correct = runs.mean(axis=0).tolist(), np.array(correct).mean(axis=0).tolist()
    if s.labels:
        floor = majority_rate(s.targets)
        s.collapsed = [k for k, value in enumerate(s.runs) if value <= floor + 1e-9]


def _add_training(store: Store, s: ArmSummary, entry: ArmEntry, by_role: Links, shots: int) -> None:
    run_id = _last(by_role, Role.FINETUNE, entry.name if entry.kind is ArmKind.FINETUNE else entry.finetuned)
    if run_id is None:
        return
    stats = TrainStats.from_json(store.run(run_id)["summary_json"])
    s.trainable_parameters, s.total_parameters = stats.trainable_parameters, stats.total_parameters
    s.setup_seconds, s.training_tokens = stats.seconds, stats.tokens
    s.examples_used = stats.examples
    s.examples_note = f"training examples{f' + {shots} demos per request' if shots else ''}"
    if stats.max_length:  # stores before the length was recorded say nothing rather than 0%
        s.examples_note += f" ({stats.truncated_share:.1%} truncated by max_length; longest {stats.max_length} tokens)"
    s.label_parts["training"] = stats.examples


def _charge_labels(s: ArmSummary) -> None:
    """The label rule: an arm is charged for every labelled example it consumed, once. Its demo pool and
    its training examples come from one split, so the pool is charged beyond the training examples."""
    parts = s.label_parts
    if "demo pool" in parts and "training" in parts:
        parts["demo pool"] = max(parts["demo pool"] - parts["training"], 0)
    s.label_parts = {k: v for k, v in parts.items() if v}
    s.examples_needed = sum(s.label_parts.values())


def _add_optimisation(store: Store, s: ArmSummary, entry: ArmEntry, by_role: Links, sizes: dict,
                      exp: Experiment) -> None:
    run_id = _last(by_role, Role.OPTIMISE, entry.name)
    if run_id is None:
        return
    run = store.run(run_id)
    s.optimise_calls = OptimiseSummary.from_json(run["summary_json"]).calls_spent
    s.setup_seconds += (run["finished_at"] or run["started_at"]) - run["started_at"]
    s.examples_note += f" (optimised on dev with {s.optimise_calls} calls)"
    spec = build_prompt_arm(entry, exp.task, tuning=exp.tuning).optimise
    dev = sizes.get("dev", 0)
    if spec is not None:  # candidates are scored on the first dev_items of dev, within the call budget
        dev = min(dev or spec.dev_items, spec.dev_items, spec.budget)
        if spec.demo_sets:  # bootstrapped demo sets draw from the labelled training split
            s.label_parts["demo pool"] = max(s.label_parts.get("demo pool", 0), sizes.get("train", 0))
    s.label_parts["dev (prompt search)"] = dev


def _add_tuning(store: Store, s: ArmSummary, entry: ArmEntry, by_role: Links, sizes: dict) -> None:
    """The search an arm got: a fine-tune's trials (its whole time is development time), or a prompt
    arm's optimiser candidates; a combined arm shows its fine-tune's search."""
    owner = entry.name if entry.kind is ArmKind.FINETUNE else entry.finetuned
    run_id = _last(by_role, Role.TUNING, owner)
    if run_id is not None:
        t = TuningSummary.from_json(store.run(run_id)["summary_json"])
        s.tuning = {"trials": len(t.trials), "minutes": t.seconds / 60, "dev_metric": t.dev_metric,
                    "chosen": t.chosen_text(), "of": owner if owner != entry.name else None,
                    "dev_n": sizes.get("dev", 0), "runner_up": _runner_up([tr.get("best") for tr in t.trials])}
        if entry.kind is ArmKind.FINETUNE:
            s.setup_seconds = max(s.setup_seconds, t.seconds)
        s.label_parts["dev (fine-tune search)"] = sizes.get("dev", 0)  # every trial is scored on the whole dev split
        return
    run_id = _last(by_role, Role.OPTIMISE, entry.name)
    if run_id is not None:
        run = store.run(run_id)
        o = OptimiseSummary.from_json(run["summary_json"])
        chosen = o.chosen or {}
        instruction = str(chosen.get("instruction") or "the task's instruction").replace("{% raw %}", "").replace(
            "{% endraw %}", "")
        words = chosen.get("label_words")
        s.tuning = {"trials": len(o.trials), "minutes": ((run["finished_at"] or run["started_at"]) - run["started_at"]) / 60,
                    "dev_metric": o.dev_score, "of": None,
                    "chosen": f"instruction \"{instruction[:90]}\", shots={chosen.get('shots', 0)}, "
                              f"calibration={chosen.get('calibration', 'none')}"
                              + (f", label words {words}" if words else ""),
                    "dev_n": s.label_parts.get("dev (prompt search)", 0),
                    "runner_up": _runner_up([tr.get("score") for tr in o.trials])}


def _runner_up(scores: list) -> float | None:
    """The second-best candidate's dev score (None with fewer than two scored candidates)."""
    values = sorted((float(v) for v in scores if v is not None), reverse=True)
    return values[1] if len(values) > 1 else None


def _add_consistency(store: Store, s: ArmSummary, entry: ArmEntry, by_role: Links) -> None:
    run_id = _last(by_role, Role.CONSISTENCY, entry.name)
    if run_id is not None:
        m = store.metrics(run_id)
        s.agreement, s.metric_spread = _metric(m, "agreement"), _metric(m, "metric_std")


def _add_flexibility(store: Store, s: ArmSummary, entry: ArmEntry, by_role: Links) -> None:
    # a combined arm runs on its fine-tune's weights: what those weights still serve is measured once
    run_id, via = _last(by_role, Role.FLEXIBILITY, entry.name), None
    if run_id is None and entry.finetuned:
        run_id, via = _last(by_role, Role.FLEXIBILITY, entry.finetuned), entry.finetuned
    base_id = _last(by_role, Role.FLEXIBILITY_BASE, "base")
    if run_id is None or base_id is None:
        return
    tuned, ref = store.run(run_id), store.run(base_id)
    base = EvalSummary.from_json(ref["summary_json"]).main_metric
    score = EvalSummary.from_json(tuned["summary_json"]).main_metric
    base_value, value = base.value if base else None, score.value if score else None
    s.flexibility = {"task": ref["task"], "score": value, "base_score": base_value,
                     "drop": (base_value or 0.0) - (value or 0.0), "weights_of": via}


def _add_probe(store: Store, s: ArmSummary, entry: ArmEntry, by_role: Links) -> None:
    """The serving probe's latency and machine time replace the evaluation's batch figures, which stay
    beside them; a store without a probe keeps the evaluation's, labelled as such."""
    s.eval_latency_p95, s.eval_seconds_per_item = s.latency_p95, s.seconds_per_request
    run_id = _last(by_role, Role.PROBE, entry.name)
    if run_id is None:
        return
    p = ProbeSummary.from_json(store.run(run_id)["summary_json"])
    s.probe, s.latency_source = p, "serving probe"
    s.latency_p50, s.latency_p95, s.seconds_per_request = p.single_p50, p.single_p95, p.seconds_per_request


def _add_ood(store: Store, s: ArmSummary, entry: ArmEntry, by_role: Links, metric: str) -> None:
    run_id = _last(by_role, Role.OOD, entry.name)
    if run_id is None:
        return
    m = store.metrics(run_id)
    main = m[metric]
    s.ood = OutOfDomain(task=store.run(run_id)["task"], value=main["value"], ci_low=main["ci_low"],
                        ci_high=main["ci_high"], n=int(_metric(m, "n_items")), in_domain=s.metric,
                        drop=s.metric - main["value"])


def add_distillation(store: Store, exp: Experiment, arms: list[ArmSummary], by_role: Links) -> None:
    """For each distilled arm: its teacher's calls as one-off $ (at the teacher's prices), the teacher's
    quality on test and on the inputs it answered, and how often student and teacher agree on test."""
    by_name = {a.name: a for a in arms}
    for student in arms:
        run_id = _last(by_role, Role.DISTILL, student.name)
        teacher_name = exp.arm(student.name).teacher
        if run_id is None or not teacher_name:
            continue
        m, n = store.metrics(run_id), len(store.predictions(run_id))
        made = EvalSummary.from_json(store.run(run_id)["summary_json"]).cache_misses
        cost = ArmCost(_metric(m, "tokens_in_mean"), _metric(m, "tokens_out_mean"), _metric(m, "seconds_per_item"),
                       prices=exp.prices_of(exp.arm(teacher_name)))
        # every answer is paid for once, even when this store had it cached from an earlier run
        student.one_off_dollars += per_request(cost, exp.prices) * n
        teacher = by_name.get(teacher_name)
        student.distillation = {"teacher": teacher_name, "n_unlabelled": n, "calls_made_now": made,
                                "teacher_calls_dollars": per_request(cost, exp.prices) * n,
                                "teacher_on_answered": _metric(m, exp.task.metric, None),
                                "teacher_metric": teacher.metric if teacher else None,
                                "agreement": agreement(student, teacher) if teacher else None}


def add_adaptive(store: Store, arms: list[ArmSummary], by_role: Links) -> None:
    """Each arm's stop in an adaptive evaluation (how many test items it scored, and why)."""
    run_id = _last(by_role, Role.ADAPTIVE, "*")
    if run_id is None:
        return
    record = AdaptiveSummary.from_json(store.run(run_id)["summary_json"])
    for arm in arms:
        arm.adaptive = record.stop(arm.name)


def agreement(a: ArmSummary, b: ArmSummary) -> float | None:
    """Share of the items both arms predicted on which their predictions are equal."""
    theirs = dict(zip(b.item_ids, b.predictions))
    pairs = [(p, theirs[i]) for i, p in zip(a.item_ids, a.predictions) if i in theirs]
    return sum(x == y for x, y in pairs) / len(pairs) if pairs else None


def curves_from_links(store: Store, exp: Experiment, curve_links: dict) -> list[Curve]:
    curves = []
    for arm, links in curve_links.items():
        entry = exp.arm(arm)
        points = []
        for link in links:
            m = store.metrics(link.run_id)[exp.task.metric]
            points.append((int(link.x), m["value"], m["ci_low"], m["ci_high"]))
        curves.append(Curve(arm, "n_train" if entry.kind is ArmKind.FINETUNE else "shots", sorted(points)))
    # demos curve first, as a single run links them: parallel jobs link in the order they finish
    return sorted(curves, key=lambda c: c.axis != "shots")
