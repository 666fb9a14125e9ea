"""The head-to-head table: one column per arm, one row per dimension of the usual prompt-engineering
vs fine-tuning comparison, each cell a measurement or a stated fact about the run; and the
side-by-side sample of predictions."""

from __future__ import annotations

from typing import Sequence

from ..config.prices import PriceTable
from .arms import ArmSummary
from .costs import money, one_off_parts, per_request
from ..metrics import get_metric
from .evidence import collapse_reason
from .stats import best, label_bias, metric_test


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def head_to_head(arms: Sequence[ArmSummary], prices: PriceTable) -> list[tuple[str, dict[str, str]]]:
    """Rows (dimension, {arm name: cell}) of the comparison table."""
    rows: list[tuple[str, dict[str, str]]] = []

    def row(dimension: str, cell) -> None:
        rows.append((dimension, {a.name: cell(a) for a in arms}))

    if len({a.model for a in arms}) > 1:  # arms on different models: say which serves each
        row("Model", lambda a: a.model + (f" ({a.prices.mode} prices)" if a.prices is not None else ""))
    row("Methodology / model change", lambda a: (
        f"{a.trainable_parameters:,} of {a.total_parameters:,} weights trained" if a.weights_changed
        else "weights fixed (input only)"))
    row("Knowledge source", lambda a: {
        "prompt": "pre-trained weights + what the prompt carries",
        "finetune": "pre-trained weights + training set baked into weights",
        "combined": "fine-tuned weights + what the prompt carries"}[a.kind])
    row("Data requirement", lambda a: f"{a.examples_used} {a.examples_note}".strip())
    row("Performance", _performance_cell)
    reference = best(arms, ["prompt"])
    for name in _secondary_names(arms):  # each secondary metric: its value, CI and paired test, same statistic
        row(f"  {name}", lambda a, name=name: _secondary_cell(a, name, reference))
    if any(a.lengths for a in arms):
        row("Length & truncation", _length_cell)
    if any(a.adaptive for a in arms):
        row("Test items (adaptive)", lambda a: a.adaptive.describe() if a.adaptive else f"{len(a.item_ids)} (all)")
    row("Control & consistency", lambda a: "; ".join(filter(None, [
        (f"agreement {_pct(a.agreement)}" + ("" if a.labels else f" ({a.metric_name} between variants)"))
        if a.agreement is not None else "",
        f"paraphrase spread ±{a.metric_spread:.3f}" if a.metric_spread is not None else "",
        # a fine-tune's seed-to-seed spread sits beside a prompt's paraphrase spread: both are what a rerun moves
        f"seed spread ±{a.metric_std:.3f} over {len(a.runs)} seeds" if a.runs else "",
        f"format violations {_pct(a.format_violation_rate)}" + ("" if a.labels else " (empty replies)")])))
    if any(a.ran_on for a in arms):
        row("Ran on", lambda a: a.ran_on or "not recorded")
    row("Cost per 1k requests", lambda a: _cost_cell(a, prices))
    row("One-off cost", lambda a: _one_off_cell(a, prices))
    if any(a.distillation for a in arms):
        row("Distillation", _distillation_cell)
    row("Latency p50 / p95", _latency_cell)
    row("Throughput", _throughput_cell)
    row("Tuning on dev", _tuning_cell)
    row("Development effort", lambda a: "; ".join(filter(None, [
        f"{a.setup_seconds:.0f} s training/optimising" if a.setup_seconds else "no training",
        f"{a.optimise_calls} optimiser calls" if a.optimise_calls else ""])))
    row("Bias & hallucinations", lambda a: _bias_cell(a) if a.labels else FREE_TEXT)
    row("Time to first result", lambda a: f"{a.setup_seconds + a.eval_seconds:.0f} s")
    row("Flexibility", lambda a: (
        f"{a.flexibility['task']}: {a.flexibility['score']:.3f} vs base {a.flexibility['base_score']:.3f} "
        f"(change {-a.flexibility['drop']:+.3f})"
        + (f", {a.flexibility['weights_of']}'s weights" if a.flexibility.get("weights_of") else "") if a.flexibility else
        ("same weights serve any task (prompt swap)" if not a.weights_changed else "not measured")))
    if any(a.ood for a in arms):
        row("Out of domain", _ood_cell)
    return rows


FREE_TEXT = "n/a (free text)"
"""What a label row says for a free-text task: it was not computed, so it shows no number."""


def _named(name: str) -> str:
    """A metric's name, with its direction when lower is better (the reader's default is higher)."""
    return name if get_metric(name).higher_is_better else f"{name} (lower is better)"


def _secondary_names(arms: Sequence[ArmSummary]) -> list[str]:
    return list(dict.fromkeys(n for a in arms for n in a.secondary))


def _secondary_cell(a: ArmSummary, name: str, reference: ArmSummary | None) -> str:
    score = a.secondary.get(name)
    if score is None or score.value is None:
        return "not measured"
    text = f"{_named(name)} {score.value:.3f} [{score.ci_low:.3f}, {score.ci_high:.3f}]"
    test = metric_test(name, reference, a) if reference is not None and reference is not a else None
    if test is not None:
        text += f"; vs {reference.name} {test.difference:+.3f} (paired bootstrap p={test.p_value:.2g})"
    return text


def _length_cell(a: ArmSummary) -> str:
    n = a.lengths
    if not n:
        return "not measured"
    ratio = f", ratio {n['length_ratio']:.2f}" if n.get("length_ratio") is not None else ""
    return (f"{n.get('output_words_mean', 0):.1f} words (references {n.get('reference_words_mean', 0):.1f}{ratio}); "
            f"{_pct(n.get('truncated_rate'))} cut at the generation cap")


def _performance_cell(a: ArmSummary) -> str:
    text = f"{_named(a.metric_name)} {a.metric:.3f} [{a.ci_low:.3f}, {a.ci_high:.3f}]"
    if a.runs:  # each seed's value: a reader sees the spread, not only its summary
        values = ", ".join(f"{v:.3f}" for v in a.runs)
        text = (f"{_named(a.metric_name)} {a.metric:.3f} ± {a.metric_std:.3f} over {len(a.runs)} seeds ({values}) "
                f"[{a.ci_low:.3f}, {a.ci_high:.3f}]")
    elif a.deterministic:
        text += "; deterministic (1 run: nothing in it is random, a repeat gives the same answers)"
    if a.collapsed:
        text += f"; {len(a.collapsed)} of {len(a.runs)} runs collapsed (at or below the majority-class rate)"
    why = collapse_reason(a)
    if why:
        text += f"; NOT A FAIR REPRESENTATIVE of its side ({why})"
    return text


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion p observed on n items (a tuning trial keeps only its value)."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _tuning_cell(a: ArmSummary) -> str:
    t = a.tuning
    if not t:
        return "none (run as written)"
    via = f" ({t['of']}'s weights)" if t.get("of") else ""
    plural = "s" if t["trials"] != 1 else ""
    text = f"{t['trials']} candidate{plural}, {t['minutes']:.1f} min; chosen {t['chosen']}: dev {t['dev_metric']:.3f}"
    n = t.get("dev_n") or 0
    if n and t.get("dev_metric") is not None and a.metric_name == "accuracy":
        low, high = wilson(t["dev_metric"], n)
        text += f" [{low:.3f}, {high:.3f}] on {n} dev items"
        if t.get("runner_up") is not None:
            close = low <= t["runner_up"] <= high
            text += (f"; runner-up dev {t['runner_up']:.3f}"
                     + (": inside the chosen's CI, the two cannot be told apart on this dev split" if close else ""))
        if high - low > 0.2:  # a 95% CI this wide cannot separate candidates a few points apart
            text += f"; WARNING: {n} dev items are too few to separate candidates closer than ±{(high - low) / 2:.2f}"
    return text + via


def _cost_cell(a: ArmSummary, prices: PriceTable) -> str:
    basis = ""
    if prices.mode == "hardware":  # api mode prices tokens: machine time does not enter
        basis = (f"; {a.seconds_per_request:.4f} s machine time per request at {a.probe.concurrency} concurrent"
                 if a.probe else f"; {a.seconds_per_request:.4f} s per request from evaluation batches, no probe")
    return f"{money(1000 * per_request(a.cost(), prices))} ({a.tokens_in:.0f} in / {a.tokens_out:.1f} out tokens{basis})"




def label_parts_text(a: ArmSummary) -> str:
    """`256 training + 100 dev (fine-tune search) = 356`: the label rule's parts of one arm."""
    parts = " + ".join(f"{n:,} {k}" for k, n in a.label_parts.items())
    if not parts or len(a.label_parts) == 1 and a.examples_needed == sum(a.label_parts.values()):
        return parts or f"{a.examples_needed:,}"
    return f"{parts} = {a.examples_needed:,}"


def _one_off_cell(a: ArmSummary, prices: PriceTable) -> str:
    own = a.prices or prices
    p = one_off_parts(a.cost(), prices)
    return (f"{money(p.total)} = compute {money(p.compute)} + labels {money(p.labels)} "
            f"({label_parts_text(a)} x {money(own.per_example(not a.labels))} per "
            f"{'label' if a.labels else 'written target'}) + people {money(p.people)} "
            f"({p.hours:g} h x {money(own.engineer_per_hour)}/h)"
            + (f" + teacher calls {money(p.other)}" if p.other else ""))


def _latency_cell(a: ArmSummary) -> str:
    if a.probe is None:
        return f"{a.latency_p50:.3f} s / {a.latency_p95:.3f} s (evaluation batch wall times: no serving probe stored)"
    p = a.probe
    return (f"{p.single_p50:.3f} s / {p.single_p95:.3f} s per single request (serving probe, {p.items} requests); "
            f"p95 {p.batched_p95:.3f} s at {p.concurrency} concurrent")


def _throughput_cell(a: ArmSummary) -> str:
    served = (f"serving {a.probe.throughput:.1f} requests/s at {a.probe.concurrency} concurrent" if a.probe
              else "serving: not probed")
    spi = a.eval_seconds_per_item
    return served + (f"; evaluation {1 / spi:.1f} items/s in batches (p95 wait {a.eval_latency_p95:.3f} s)"
                     if spi > 0 else "")


def _ood_cell(a: ArmSummary) -> str:
    o = a.ood
    if o is None:
        return "not measured"
    return (f"{o.task}: {a.metric_name} {o.value:.3f} [{o.ci_low:.3f}, {o.ci_high:.3f}] on {o.n} items; "
            f"change {-o.drop:+.3f} vs in-domain {o.in_domain:.3f}")


def _distillation_cell(a: ArmSummary) -> str:
    d = a.distillation
    if not d:
        return "—"
    teacher = f"{d['teacher_metric']:.3f}" if d.get("teacher_metric") is not None else "n/a"
    on = f", {d['teacher_on_answered']:.3f} on the inputs it answered" if d.get("teacher_on_answered") is not None else ""
    return (f"student of {d['teacher']} ({a.metric_name} {a.metric:.3f} vs teacher {teacher}{on}); "
            f"agreement with teacher {_pct(d.get('agreement'))}; {d['n_unlabelled']} teacher answers, "
            f"{money(d['teacher_calls_dollars'])} one-off")


def _bias_cell(a: ArmSummary) -> str:
    parts = [f"hallucinated labels {_pct(a.hallucinated_label_rate)}", f"invalid {_pct(a.format_violation_rate)}"]
    if a.labels:
        b = label_bias(a.predictions, a.targets, a.labels)
        parts.append(f"label TV {b['tv_distance']:.2f}, worst recall {b['worst_recall']:.2f} ({b['worst_class']})")
    return "; ".join(parts)


def side_by_side(arms: Sequence[ArmSummary], n: int) -> list[dict]:
    """The first n shared items with every arm's prediction, disagreements first."""
    if not arms:
        return []
    common = set(arms[0].item_ids).intersection(*[set(a.item_ids) for a in arms[1:]])
    pos = [{i: k for k, i in enumerate(a.item_ids)} for a in arms]
    rows = []
    for item in (i for i in arms[0].item_ids if i in common):
        preds = {a.name: a.predictions[p[item]] for a, p in zip(arms, pos)}
        k = pos[0][item]
        rows.append({"id": item, "input": arms[0].inputs[k] if arms[0].inputs else "", "target": arms[0].targets[k],
                     "predictions": preds, "disagree": len(set(map(str, preds.values()))) > 1})
    rows.sort(key=lambda r: not r["disagree"])
    return rows[:n]
