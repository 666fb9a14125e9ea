"""Adaptive test evaluation (`adaptive:` in an experiment): the arms' test split in interleaved chunks
of the same items, each arm stopping once its comparison with the best arm is settled.

After every arm has trained and tuned (`arms.prepare_arm`), the test split is shuffled with the spec's
seed and every running arm scores the next `chunk` items of that order. After each chunk (from
`min_items` on) the leader is the running arm with the highest mean score, and each other running
arm is compared with it on their paired items by the anytime-valid confidence sequence of
`tuneoff.compare.sequential`: an arm whose sequence lies above 0 (significantly below the leader) or,
with a margin, inside (-margin, +margin) stops; the leader stops when no other arm runs; everything
stops at the end of the test split. Each arm's evaluation is one ordinary run over the items it
scored (a prefix of the shuffled order), so the comparison pairs every two arms on the items both
scored. The stopping record is stored as an `AdaptiveSummary` (run kind `adaptive`).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import asdict, dataclass
import numpy as np

from ..compare.sequential import Settled, confidence_sequence, look
from ..config.experiment import ArmEntry, build_prompt_arm
from ..data import Example
from ..evaluate.engine import EvalSession, evaluation
from ..metrics import get_metric
from ..prompting import TaskContext
from ..records import AdaptiveStop, AdaptiveSummary, ExperimentRuns, Role, RunKind, StopReason
from .context import RunContext


def shuffled(items: list[Example], seed: int) -> list[Example]:
    """The order adaptive evaluation scores the test split in: seeded, so a rerun resumes the same runs."""
    return [items[i] for i in np.random.default_rng(seed).permutation(len(items))]


@dataclass
class Lane:
    """One arm's evaluation while the adaptive loop runs."""

    entry: ArmEntry
    session: EvalSession
    stop: AdaptiveStop | None = None


def evaluate_adaptively(ctx: RunContext) -> list[tuple[ArmEntry, int, list[Example]]]:
    """Score every arm of the experiment on the test split adaptively; link each arm's evaluation
    (Role.ARM) and the stopping record (Role.ADAPTIVE). Returns (arm, run id, items it scored) per arm."""
    spec = ctx.exp.adaptive
    order = shuffled(ctx.data.test, spec.seed)
    prepared = [(entry, *_prepared(ctx, entry)) for entry in ctx.exp.arms]  # dev searches before any test item
    with ExitStack() as stack:
        lanes = {entry.name: Lane(entry, stack.enter_context(evaluation(
            backend, arm, order, TaskContext.of(ctx.data), store=ctx.store, split="test", console=ctx.console,
            experiment_id=ctx.experiment_id))) for entry, backend, arm in prepared}
        looks = _schedule(ctx, lanes, len(order))
        results = {name: lane.session.finish() for name, lane in lanes.items()}
    summary = AdaptiveSummary(spec.chunk, spec.alpha, spec.min_items, spec.margin, spec.seed, len(order), looks)
    out = []
    for name, lane in lanes.items():
        result = results[name]
        # a resumed run may hold items past the stop (scored before an interruption): the record counts them
        lane.stop.items = len(result.predictions)
        summary.stops.append(lane.stop.to_dict())
        ctx.link(result.run_id, Role.ARM, name)
        main = result.main
        ctx.say(f"{name}: {main.name} {main.value:.3f} [{main.ci_low:.3f}, {main.ci_high:.3f}] ({result.cache_hits} "
                f"cached, {result.cache_misses} new calls, {result.wall_seconds:.1f} s); {lane.stop.describe()}")
        out.append((lane.entry, result.run_id, order[:lane.stop.items]))
    run_id = ctx.store.start_run(RunKind.ADAPTIVE, arm="*", task=ctx.exp.task.name, split="test", model=ctx.exp.model,
                                 spec=asdict(spec), experiment_id=ctx.experiment_id)
    ctx.store.finish_run(run_id, "done", summary.to_dict())
    ctx.link(run_id, Role.ADAPTIVE, "*")
    full = len(order) * len(lanes)
    ctx.say(f"adaptive evaluation: {summary.items_scored} of {full} arm-items scored "
            f"({1 - summary.items_scored / full:.0%} fewer) in {looks} looks")
    return out


def items_scored(ctx: RunContext, arm: str) -> list[Example] | None:
    """The test items `arm` scored in this experiment's adaptive evaluation (its prefix of the shuffled
    order), from the stored stopping record, so a job in another process reads what this one did; None
    without `adaptive:` (every item). Curve points score these, as repeats do (`studies.on_curve_items`)."""
    if ctx.exp.adaptive is None:
        return None
    run_id = ExperimentRuns.read(ctx.store, ctx.experiment_id).last(Role.ADAPTIVE, "*")
    stop = AdaptiveSummary.from_json(ctx.store.run(run_id)["summary_json"]).stop(arm) if run_id is not None else None
    if stop is None:  # the arms unit runs before every curve point (`plan.plan`): our bug
        raise RuntimeError(f"no adaptive stopping record for arm {arm!r} of experiment {ctx.experiment_id}")
    return shuffled(ctx.data.test, ctx.exp.adaptive.seed)[:stop.items]


def _schedule(ctx: RunContext, lanes: dict[str, Lane], n: int) -> int:
    """Chunks and looks until every arm has stopped; sets each lane's stop; returns the looks taken."""
    spec = ctx.exp.adaptive
    running, t, looks = list(lanes), 0, 0
    while running:
        t = min(t + spec.chunk, n)
        for name in running:
            with ctx.phase(f"{name}: evaluate"):
                lanes[name].session.score(t)
        looks += 1
        if t < spec.min_items and t < n:
            continue
        # item scores are in [0, 1] in the metric's direction: a lower-is-better metric leads by its lowest
        flip = not get_metric(ctx.exp.task.metric).higher_is_better
        scores = {name: np.abs(flip - np.array(lanes[name].session.scores()[:t])) for name in running}
        leader, settled = look(scores, spec.alpha, spec.margin)
        for name in running:
            how = settled.get(name)
            if name == leader or (t < n and how in (None, Settled.ABOVE)):
                continue
            cs = confidence_sequence(scores[leader] - scores[name], spec.alpha)
            reason = {Settled.BELOW: StopReason.SETTLED_BELOW,
                      Settled.EQUIVALENT: StopReason.EQUIVALENT}.get(how, StopReason.REACHED_N_TEST)
            lanes[name].stop = AdaptiveStop(name, t, n, reason, leader, cs.low, cs.high, spec.alpha)
            if reason is not StopReason.REACHED_N_TEST:
                ctx.say(f"[dim]{name} stops: {lanes[name].stop.describe()}[/dim]")
        running = [name for name in running if lanes[name].stop is None]
        if running == [leader]:
            lanes[leader].stop = AdaptiveStop(leader, t, n, StopReason.BEST if t < n else StopReason.REACHED_N_TEST,
                                              alpha=spec.alpha)
            running = []
    return looks


def _prepared(ctx: RunContext, entry: ArmEntry):
    """(backend, the PromptArm to score): an arm with `optimise` (tune: true) is searched on dev first."""
    from ..evaluate.optimise import optimise

    arm = build_prompt_arm(entry, ctx.exp.task, tuning=ctx.exp.tuning)
    backend = ctx.backend(ctx.weights_of(entry))
    if arm.optimise is None:
        return backend, arm
    with ctx.phase(f"{arm.name}: optimise"):
        optimised = optimise(backend, arm, ctx.data.train, ctx.data.dev, ctx.data, store=ctx.store)
    ctx.record_search(entry.name, optimised)  # as `arms.evaluate_arm` does for a searched arm
    return backend, optimised.arm
