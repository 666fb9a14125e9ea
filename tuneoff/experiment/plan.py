"""What an experiment runs, decided once: its units, in order, each with the units it needs first.

`tuneoff run` does the units one after another in this process (`run.run_experiment`); `--jobs N`
and `--emit-slurm` do the same units in parallel processes or as a Slurm array (`tuneoff.sweep`), each
unit as soon as its needs have finished. A change to what an experiment runs is made here only.

    arm:NAME      the arm's chain: train or tune, score on test, serving probe, out of domain, repeats
    arms          with `adaptive:`, every arm together: the arms' test items are scored interleaved,
                  each arm stopping against the others (`adaptive.py`), so they are one unit
    shots:K       one point of the demos curve
    n_train:N     one point of the training-size curve (it trains a model)
    consistency   the paraphrase / seed probes
    flexibility   every fine-tuned model and the base model on the second task
    judge         the judge pass over every arm's stored test outputs (`judging.py`)

A combined arm needs the fine-tune it runs on; a distilled arm its teacher's model; a curve point,
a consistency probe of a searched arm, needs that arm's search; flexibility needs every fine-tune.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ..config.experiment import ArmEntry, ArmKind, Experiment
from ..errors import TuneoffError, did_you_mean


class UnitKind(str, Enum):
    """A kind of unit; its value is the unit name's prefix (`arm:lora`, `shots:4`, `consistency`)."""

    ARM = "arm"
    ARMS = "arms"
    SHOTS = "shots"
    N_TRAIN = "n_train"
    CONSISTENCY = "consistency"
    FLEXIBILITY = "flexibility"
    JUDGE = "judge"


@dataclass(frozen=True)
class Unit:
    """One piece of an experiment's work: a job of a sweep, a step of a single run."""

    kind: UnitKind
    arm: str | None = None
    """The arm it works on: the arm (ARM) or the curve's arm (SHOTS, N_TRAIN)."""
    x: int | None = None
    """A curve point's k demos (SHOTS) or n training examples (N_TRAIN)."""
    needs: tuple[str, ...] = ()
    """Names of the units that must have finished first: those whose models or search results it uses."""

    @property
    def name(self) -> str:
        """What `--unit` takes and the store records: `arm:NAME`, `shots:K`, `n_train:N`, `arms`, ..."""
        if self.kind is UnitKind.ARM:
            return f"arm:{self.arm}"
        return self.kind.value if self.x is None else f"{self.kind.value}:{self.x}"


def plan(exp: Experiment) -> list[Unit]:
    """Every unit of the experiment, in the order a single run does them (each after the units it needs)."""
    if exp.adaptive is not None:
        units = [Unit(UnitKind.ARMS)]
    else:
        units = [Unit(UnitKind.ARM, e.name, needs=_teacher(exp, e) if e.kind is ArmKind.FINETUNE else _weights(exp, e))
                 for e in arm_order(exp)]
    prompt, tune = curve_arms(exp)
    scored = ("arms",) if exp.adaptive is not None else ()  # curve points score the items their arm scored
    if prompt:
        units += [Unit(UnitKind.SHOTS, prompt.name, k, _unique(_weights(exp, prompt) + _choices(exp, prompt) + scored))
                  for k in exp.curves.shots]
    if tune:
        units += [Unit(UnitKind.N_TRAIN, tune.name, n, _unique(_teacher(exp, tune) + _choices(exp, tune) + scored))
                  for n in exp.curves.n_train]
    probed = consistency_arms(exp)
    if probed:
        needs = _unique(sum((_weights(exp, e) + _choices(exp, e) for e in probed), ()))
        units.append(Unit(UnitKind.CONSISTENCY, needs=needs))
    if exp.flexibility:
        needs = _unique(tuple(_owner(exp, a.name) for a in exp.arms if a.kind is ArmKind.FINETUNE))
        units.append(Unit(UnitKind.FLEXIBILITY, needs=needs))
    if exp.judge is not None:  # grades the arms' stored test outputs: after every arm has scored
        units.append(Unit(UnitKind.JUDGE, needs=_unique(tuple(_owner(exp, a.name) for a in exp.arms))))
    return units


def arm_order(exp: Experiment) -> list[ArmEntry]:
    """Models before their users: fine-tune arms first, distilled students after the fine-tunes that
    may teach them, then prompt arms (combined arms run on the fine-tunes trained by then)."""
    return sorted(exp.arms, key=lambda a: (a.kind is not ArmKind.FINETUNE, bool(a.teacher)))


def curve_arms(exp: Experiment) -> tuple[ArmEntry | None, ArmEntry | None]:
    """(the prompt arm of the shots curve, the fine-tune arm of the n_train curve): named, else the
    first prompt arm that shows demos and the first fine-tune arm."""
    spec = exp.curves
    if spec is None:
        return None, None
    prompt = exp.arm(spec.prompt_arm) if spec.prompt_arm else next(
        (a for a in exp.arms if a.kind is ArmKind.PROMPT and a.options.prompt.shots > 0), None)
    tune = exp.arm(spec.finetune_arm) if spec.finetune_arm else next(
        (a for a in exp.arms if a.kind is ArmKind.FINETUNE), None)
    return prompt, tune


def consistency_arms(exp: Experiment) -> list[ArmEntry]:
    """The arms the experiment's `consistency` lists, and every arm that declares its own paraphrases or seeds."""
    listed = exp.consistency.arms if exp.consistency else []
    return [a for a in exp.arms if a.name in listed or a.options.prompt.paraphrases or a.options.prompt.seeds]


def _owner(exp: Experiment, arm: str) -> str:
    """The unit that trains, searches and scores `arm`."""
    return "arms" if exp.adaptive is not None else f"arm:{arm}"


def _weights(exp: Experiment, entry: ArmEntry) -> tuple[str, ...]:
    """The unit that trains the model `entry` runs on (none for the base or a served model)."""
    if entry.kind is ArmKind.FINETUNE:
        return (_owner(exp, entry.name),)
    return (_owner(exp, entry.finetuned),) if entry.finetuned else ()


def _teacher(exp: Experiment, entry: ArmEntry) -> tuple[str, ...]:
    """A distilled fine-tune needs its teacher's model (the teacher as its own unit trained or tuned it)."""
    return _weights(exp, exp.arm(entry.teacher)) if entry.teacher else ()


def _choices(exp: Experiment, entry: ArmEntry) -> tuple[str, ...]:
    """The arm's own unit, when it makes choices on dev that later work reuses: a tuned fine-tune's
    options, an optimised prompt's instruction and calibration."""
    if entry.kind is ArmKind.FINETUNE:
        searched = exp.tuned(entry) and not entry.teacher
    else:
        searched = entry.options.prompt.optimise is not None
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
