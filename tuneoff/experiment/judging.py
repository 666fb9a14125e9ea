"""The judge unit: the experiment's `judge:` model grades every arm's stored test outputs.

It reads what the arm units stored (never re-running an arm), so it runs last and, in a sweep, as its
own job once every arm's unit has finished. Its calls, verdicts and figures are one `judge` run linked
to the experiment (role `judge`); `tuneoff.compare.rebuild` reads them back for the table.
"""

from __future__ import annotations

import json

from ..evaluate.judge import Output, judge_pass
from ..models.openai import ServerError
from ..records import Role
from .context import RunContext


def reference_text(target: str) -> str:
    """A stored target as the judge is shown it: several references (a JSON list) one per line."""
    try:
        refs = json.loads(target)
    except ValueError:
        return target
    if isinstance(refs, list) and all(isinstance(r, str) for r in refs):
        return refs[0] if len(refs) == 1 else "\n".join(f"- {r}" for r in refs)
    return target


def arm_outputs(ctx: RunContext) -> dict[str, list[Output]]:
    """Each arm's test outputs (its last linked evaluation), in item order, with their per-item metric."""
    runs = {link["arm"]: link["run_id"] for link in ctx.store.linked_runs(ctx.experiment_id, Role.ARM.value)}
    out = {}
    for entry in ctx.exp.arms:
        if entry.name not in runs:
            continue
        out[entry.name] = [
            Output(r["example_id"], entry.name, r["input"], reference_text(r["target"]),
                   r["prediction"] if r["prediction"] is not None else r["output"],
                   metric=float(r["correct"]) if r["correct"] is not None else None)
            for r in ctx.store.predictions(runs[entry.name])]
    return out


def check_ratings(exp, data) -> None:
    """A ratings file that names no test item fails before any arm spends its compute."""
    if exp.judge is not None and exp.judge.ratings:
        from ..evaluate.judge import _ratings_path
        from ..evaluate.judge_stats import read_ratings

        read_ratings(_ratings_path(exp.judge), {ex.id for ex in data.test}, {a.name for a in exp.arms})


def run_judge(ctx: RunContext) -> None:
    """The judge pass; a judge server that stays unreachable or keeps failing (after the backend's
    retries) leaves the arms' results and the verdicts stored so far: the report goes out without
    judge rows, and a rerun resumes the pass from the stored calls."""
    spec = ctx.exp.judge
    outputs = arm_outputs(ctx)
    try:
        with ctx.phase("judge"):
            backend = ctx.backend(spec.model)
            report = judge_pass(backend, spec, outputs, ctx.store, experiment_id=ctx.experiment_id,
                                task=ctx.exp.task.name, hardware_per_hour=ctx.exp.prices.hardware_per_hour)
    except ServerError as exc:
        ctx.say(f"judge pass stopped: {exc.message}; the arms' results are kept, rerun to resume the judge")
        return
    ctx.link(report.run_id, Role.JUDGE, "")
    r, c = report.reliability, report.cost
    flips = r.get("position_flip_rate")
    ctx.say(f"judge {spec.model} ({spec.mode}): " + ", ".join(
        f"{arm} {s['value']:.2f}" if s["value"] is not None else f"{arm} n/a" for arm, s in report.scores.items())
        + f"; flips {_pct(flips['value'] if flips else None)}, self-agreement {_pct(r['self_agreement']['value'])}, "
        f"agrees with {ctx.exp.task.metric} {_pct(r['metric_agreement']['value'])}; "
        f"{c.calls} calls ({c.new_calls} new), ${c.usd:.4f}")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"
