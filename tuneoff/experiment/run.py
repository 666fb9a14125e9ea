"""`tuneoff run`: the experiment's plan (`plan.py`) done unit by unit in this process, then the
comparison. A sweep (`tuneoff.sweep`: `--jobs N`, Slurm) does the same units with `run_unit`, one
per process, so both give the same stored results.

Order: fine-tune arms train first (prompt arms may run on their models), then each arm is scored
on the test split by the one evaluation engine, timed as a server by the serving probe and scored
on the out-of-domain set if there is one, then the learning curves, consistency probes and the
flexibility check. Every run is linked to the experiment in the store; the comparison is then
rebuilt from the store alone (`tuneoff.compare.rebuild`), so `tuneoff report` can redo it later.
"""

from __future__ import annotations

import copy
import time

from ..config.experiment import Experiment
from ..config.specs import to_dict
from ..config.task import load_task
from ..locks import hold
from ..memory import peak_mb
from ..models.environment import run_environment
from ..records import ExperimentSummary, UnitState
from ..store import Store
from .arms import prepare_arm, score_arm
from .context import RunContext
from .judging import check_ratings, run_judge
from .plan import Unit, UnitKind, plan
from .plan import consistency_arms
from .studies import n_train_point, run_adaptive, run_consistency, run_flexibility, shots_point


def run_experiment(exp: Experiment, store: Store, console=None) -> int:
    """Run everything the experiment asks for; returns its experiment id in the store."""
    # a second `run` of the same experiment would train into the same model folders: refused
    with hold(exp.output_dir() / ".run.lock", f"running experiment '{exp.name}'"):
        return _run_experiment(exp, store, console)


def _run_experiment(exp: Experiment, store: Store, console=None) -> int:
    began = time.perf_counter()
    data = load_task(exp.task)  # data mistakes fail before the experiment has a row in the store
    check_ratings(exp, data)
    experiment_id = store.add_experiment(exp.name, to_dict(exp))
    ctx = RunContext(exp, store, experiment_id, data, console)
    ctx.say(f"experiment {experiment_id}: {exp.name} — train {len(ctx.data.train)}, dev {len(ctx.data.dev)}, "
            f"test {len(ctx.data.test)} items; store {store.path}")
    ctx.ood = load_task(exp.ood.task_spec(exp.task)) if exp.ood else None
    units = plan(exp)
    for i, unit in enumerate(units):
        run_unit(ctx, unit)
        ctx.release(models_needed(ctx, units[i + 1:]))
    ctx.compile_phase()
    ctx.phases["total"] = time.perf_counter() - began
    ctx.memory.peaks["total"] = round(max([peak_mb(), *ctx.memory.peaks.values()]), 1)
    sizes = {"train": len(ctx.data.train), "dev": len(ctx.data.dev), "test": len(ctx.data.test)}
    summary = ExperimentSummary(ctx.phases, sizes, peak_rss_mb=ctx.memory.peaks, environment=run_environment())
    store.finish_experiment(experiment_id, summary.to_dict())
    return experiment_id


def models_needed(ctx: RunContext, units: list[Unit]) -> set[str]:
    """The model specs `units` may load that are known now (a model still to be trained is not)."""
    exp, entries = ctx.exp, []
    for unit in units:
        if unit.kind is UnitKind.ARMS:
            entries += exp.arms
        elif unit.kind is UnitKind.CONSISTENCY:
            entries += consistency_arms(exp)
        elif unit.arm and unit.kind is not UnitKind.N_TRAIN:  # a training-size point trains its own model
            entries.append(exp.arm(unit.arm))
    entries += [exp.arm(e.teacher) for e in entries if e.teacher]  # a distilled arm also asks its teacher
    needed = {ctx.weights_of(e) for e in entries}
    if any(u.kind is UnitKind.FLEXIBILITY for u in units):
        needed |= {exp.model} | {state.model for state in ctx.arms.values() if state.model}
    return needed


def run_unit(ctx: RunContext, unit: Unit, needed: tuple[UnitState, ...] | list[UnitState] = ()) -> UnitState:
    """Do one unit's work in `ctx`, after taking in the states the units it needs left (a sweep's
    process starts empty; a single run has them in `ctx` already); returns what it produced: the arm
    states it changed, the runs it linked and the seconds of its phases."""
    for state in needed:
        for name, arm in state.arms.items():
            ctx.state(name).update(arm)
    before, linked, timed = copy.deepcopy(ctx.arms), len(ctx.links), dict(ctx.phases)
    entry = ctx.exp.arm(unit.arm) if unit.arm else None
    if unit.kind is UnitKind.ARM:
        prepare_arm(ctx, entry)
        score_arm(ctx, entry)
    elif unit.kind is UnitKind.ARMS:
        run_adaptive(ctx)
    elif unit.kind is UnitKind.SHOTS:
        shots_point(ctx, entry, unit.x)
    elif unit.kind is UnitKind.N_TRAIN:
        n_train_point(ctx, entry, unit.x)
    elif unit.kind is UnitKind.CONSISTENCY:
        run_consistency(ctx)
    elif unit.kind is UnitKind.JUDGE:
        run_judge(ctx)
    else:
        run_flexibility(ctx)
    return UnitState(arms={name: state for name, state in ctx.arms.items() if before.get(name) != state},
                     runs=ctx.links[linked:],
                     phases={k: v - timed.get(k, 0.0) for k, v in ctx.phases.items() if v != timed.get(k)})

