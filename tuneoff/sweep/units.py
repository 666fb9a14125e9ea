"""The units a sweep splits an experiment into, and which units each one needs first.

A unit is a piece of `tuneoff run`'s work done by the runner's own functions, so it gives the numbers a
single run gives; what a single run keeps in memory between pieces (trained model folders, the choices
of a search on dev) a unit leaves in the store (`UnitState`) for the units that need it.

    arm:NAME      the arm's chain: train or tune, score on test, serving probe, out of domain, repeats
    shots:K       one point of the demos curve
    n_train:N     one point of the training-size curve (it trains a model)
    consistency   the paraphrase / seed probes
    flexibility   every fine-tuned model and the base model on the second task
    arms          with `adaptive:`, every arm together: the arms' test items are scored interleaved,
                  each arm stopping against the others (`tuneoff.adaptive`), so they are one unit

A combined arm needs the fine-tune it runs on; a distilled arm its teacher's model; a curve point,
a consistency probe of a searched arm, needs that arm's search; flexibility needs every fine-tune.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config.experiment import ArmEntry, Experiment, build_prompt_arm
from ..errors import TuneoffError, did_you_mean
from ..records import UnitState
from ..runner import (RunContext, arm_order, consistency_arms, curve_arms, n_train_point, run_arm, run_arms,
                      run_consistency, run_flexibility, shots_point)


@dataclass(frozen=True)
class Unit:
    """One job of a sweep."""

    name: str
    """`arm:NAME`, `shots:K`, `n_train:N`, `consistency` or `flexibility`: what `--unit` takes."""
    needs: tuple[str, ...] = ()
    """Units that must have finished first: those whose models or search results this one uses."""


def plan(exp: Experiment) -> list[Unit]:
    """Every unit of the experiment, in the order a single run does the same work (each unit after
    the units it needs)."""
    if exp.adaptive is not None:
        units = [Unit("arms")]
    else:
        units = [Unit(f"arm:{e.name}", _teacher(exp, e) if e.kind == "finetune" else _weights(exp, e))
                 for e in arm_order(exp)]
    prompt, tune = curve_arms(exp)
    scored = ("arms",) if exp.adaptive is not None else ()  # curve points score the items their arm scored
    if prompt:
        units += [Unit(f"shots:{k}", _unique(_weights(exp, prompt) + _choices(exp, prompt) + scored))
                  for k in exp.curves.shots]
    if tune:
        units += [Unit(f"n_train:{n}", _unique(_teacher(exp, tune) + _choices(exp, tune) + scored))
                  for n in exp.curves.n_train]
    probed = consistency_arms(exp)
    if probed:
        units.append(Unit("consistency", _unique(sum((_weights(exp, e) + _choices(exp, e) for e in probed), ()))))
    if exp.flexibility:
        units.append(Unit("flexibility", _unique(tuple(_owner(exp, a.name) for a in exp.arms if a.kind == "finetune"))))
    return units


def _owner(exp: Experiment, arm: str) -> str:
    """The unit that trains, searches and scores `arm`."""
    return "arms" if exp.adaptive is not None else f"arm:{arm}"


def _weights(exp: Experiment, entry: ArmEntry) -> tuple[str, ...]:
    """The unit that trains the model `entry` runs on (none for the base or a served model)."""
    if entry.kind == "finetune":
        return (_owner(exp, entry.name),)
    return (_owner(exp, entry.finetuned),) if entry.finetuned else ()


def _teacher(exp: Experiment, entry: ArmEntry) -> tuple[str, ...]:
    """A distilled fine-tune needs its teacher's model (the teacher as its own unit trained or tuned it)."""
    teacher = (entry.finetune or {}).get("teacher")
    return _weights(exp, exp.arm(teacher)) if teacher else ()


def _choices(exp: Experiment, entry: ArmEntry) -> tuple[str, ...]:
    """The arm's own unit, when it makes choices on dev that later work reuses: a tuned fine-tune's
    options, an optimised prompt's instruction and calibration."""
    if entry.kind == "finetune":
        searched = exp.tuned(entry) and not (entry.finetune or {}).get("teacher")
    else:
        searched = build_prompt_arm(entry, exp.task, tuning=exp.tuning).optimise is not None
    return (_owner(exp, entry.name),) if searched else ()


def _unique(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def unit_named(exp: Experiment, name: str) -> Unit:
    units = {u.name: u for u in plan(exp)}
    if name not in units:
        raise TuneoffError(f"experiment '{exp.name}' has no unit '{name}'", field="unit",
                           hint=did_you_mean(name, list(units)))
    return units[name]


def waves(units: list[Unit]) -> list[list[Unit]]:
    """The units in dependency waves: wave i holds the units whose longest chain of needs is i long
    (a Slurm array per wave, each after the one before)."""
    depth: dict[str, int] = {}
    for unit in units:  # `plan` lists a unit after everything it needs
        depth[unit.name] = 1 + max((depth[n] for n in unit.needs), default=-1)
    return [[u for u in units if depth[u.name] == d] for d in range(max(depth.values(), default=-1) + 1)]


def run_unit(ctx: RunContext, unit: Unit, needed: list[UnitState]) -> UnitState:
    """Do one unit's work in `ctx` after restoring what the units it needs left; returns what it leaves."""
    for state in needed:
        ctx.tuned.update({name: Path(path) for name, path in state.tuned.items()})
        ctx.chosen.update(state.chosen)
        ctx.chosen_prompt.update(state.chosen_prompt)
    before = (set(ctx.tuned), set(ctx.chosen), set(ctx.chosen_prompt))
    kind, _, value = unit.name.partition(":")
    prompt, tune = curve_arms(ctx.exp)
    if kind == "arms":
        run_arms(ctx)
    elif kind == "arm":
        run_arm(ctx, ctx.exp.arm(value))
    elif kind == "shots":
        shots_point(ctx, prompt, int(value))
    elif kind == "n_train":
        n_train_point(ctx, tune, int(value))
    elif kind == "consistency":
        run_consistency(ctx)
    else:
        run_flexibility(ctx)
    return UnitState(tuned={k: str(v) for k, v in ctx.tuned.items() if k not in before[0]},
                     chosen={k: v for k, v in ctx.chosen.items() if k not in before[1]},
                     chosen_prompt={k: v for k, v in ctx.chosen_prompt.items() if k not in before[2]})
