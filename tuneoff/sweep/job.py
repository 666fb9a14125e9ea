"""One unit of a stored experiment in this process, and the end of a sweep.

Every job of a sweep (a worker of `tuneoff run --jobs N`, a line of a Slurm array:
`tuneoff run EXP --unit NAME --experiment-id ID`) reads the experiment as the sweep stored it, checks
that the units it needs have finished, restores what they left, does its work and records its own
state. The sweep's end (`--finish`) checks that every unit finished and records the experiment's
phases and split sizes; the comparison is then rebuilt from the store as after any run.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path

from ..compare.rebuild import experiment_spec
from ..config.experiment import Experiment
from ..config.specs import to_dict
from ..config.task import load_task
from ..errors import TuneoffError
from ..locks import hold
from ..models.environment import run_environment
from ..experiment import RunContext, plan, run_unit, unit_named
from ..records import ExperimentSummary, UnitState
from ..store import Store


def anchored(exp: Experiment) -> Experiment:
    """The experiment with its folder as an absolute path: its data and output then resolve the same
    for every job, whatever folder a job starts in."""
    # a copy: the new experiment sets its folder on its task and flexibility task, which are shared
    return dataclasses.replace(copy.deepcopy(exp), base_dir=str(Path(exp.base_dir).absolute()))


def open_sweep(exp: Experiment, store: Store) -> int:
    """The experiment's row for a sweep, after its data loaded cleanly (as `tuneoff run` checks first)."""
    exp = anchored(exp)
    load_task(exp.task)
    if exp.ood:
        load_task(exp.ood.task_spec(exp.task))
    return store.add_experiment(exp.name, to_dict(exp))


def stored_experiment(store: Store, experiment_id: int, exp: Experiment | None = None) -> Experiment:
    """The experiment as its sweep stored it, which every job runs; `exp`, the file named on the job's
    command line, must still say the same (an edited file would give jobs of one sweep other settings)."""
    stored = experiment_spec(store, experiment_id)
    given = json.loads(json.dumps(to_dict(anchored(exp)))) if exp is not None else None
    if given is not None and given != json.loads(store.experiment(experiment_id)["spec_json"]):
        raise TuneoffError(f"the experiment file is not experiment {experiment_id} as its sweep stored it",
                           field="experiment-id",
                           hint="the file changed since the jobs were written: emit them again (a new experiment id)")
    return stored


def unit_file_name(name: str) -> str:
    """A unit's name as a file name (logs, locks): arm names may hold any character."""
    return re.sub(r"[^\w.+=-]", "_", name.replace(":", "-"))


def run_stored_unit(store: Store, experiment_id: int, name: str, exp: Experiment | None = None,
                    console=None, backends: dict | None = None) -> UnitState:
    """Run unit `name` of stored experiment `experiment_id` here; its state and phases go to the store.

    backends: models loaded by earlier units in this process (a worker of `--jobs N`), reused as a
    single run reuses them; the ones this unit loads are added.
    """
    exp = stored_experiment(store, experiment_id, exp)
    unit = unit_named(exp, name)
    units = store.units(experiment_id)
    missing = [n for n in unit.needs if n not in units or units[n]["status"] != "done"]
    if missing:
        raise TuneoffError(f"unit '{name}' needs {', '.join(missing)} of experiment {experiment_id}, "
                           f"which has not finished", field="unit",
                           hint="run the units in the order of jobs.txt (submit.sh does: one array per wave)")
    lock = exp.output_dir() / ".units" / f"{experiment_id}-{unit_file_name(name)}.lock"
    with hold(lock, f"running unit {name} of experiment {experiment_id}"):
        ctx = RunContext(exp, store, experiment_id, load_task(exp.task), console)
        ctx.backends = backends if backends is not None else ctx.backends
        ctx.ood = load_task(exp.ood.task_spec(exp.task)) if exp.ood else None
        store.start_unit(experiment_id, name)
        ctx.say(f"experiment {experiment_id}: {exp.name}, unit {name}; store {store.path}")
        try:
            state = run_unit(ctx, unit, [UnitState.from_json(units[n]["state_json"]) for n in unit.needs])
        except BaseException as exc:
            _record_failure(store, experiment_id, name, ctx.phases, exc)
            raise
        store.finish_unit(experiment_id, name, "done", state.to_dict(), ctx.phases)
    return state


def _record_failure(store: Store, experiment_id: int, name: str, phases: dict, exc: BaseException) -> None:
    what = exc.message if isinstance(exc, TuneoffError) else f"{type(exc).__name__}: {exc}"
    try:
        store.finish_unit(experiment_id, name, "failed", phases=phases, error=what)
    except TuneoffError:
        pass  # the store itself failing is the error to report, not this record of it


def finish_sweep(store: Store, experiment_id: int, exp: Experiment | None = None, jobs: int | None = None,
                 wall_seconds: float | None = None) -> Experiment:
    """Check that every unit finished; record the phases (each summed over the units) and split sizes.

    jobs: processes the units ran in (default: one per unit, a Slurm array).
    wall_seconds: the sweep's wall time (default: first unit start to last unit end).
    """
    exp = stored_experiment(store, experiment_id, exp)
    units = store.units(experiment_id)
    unfinished = [u.name for u in plan(exp) if u.name not in units or units[u.name]["status"] != "done"]
    if unfinished:
        states = ", ".join(f"{n} ({units[n]['status'] if n in units else 'not started'})" for n in unfinished)
        raise TuneoffError(f"experiment {experiment_id} has unfinished units: {states}", field="experiment-id",
                           hint="see their logs; rerun a unit with its line of jobs.txt (stored work is reused)")
    rows = [units[u.name] for u in plan(exp)]
    phases: dict[str, float] = {}
    for row in rows:
        for phase, seconds in json.loads(row["phases_json"]).items():
            phases[phase] = phases.get(phase, 0.0) + seconds
    phases["total"] = wall_seconds if wall_seconds is not None else (
        max(r["finished_at"] for r in rows) - min(r["started_at"] for r in rows))
    data = load_task(exp.task)
    sizes = {"train": len(data.train), "dev": len(data.dev), "test": len(data.test)}
    summary = ExperimentSummary(phases, sizes, jobs or len(rows), environment=run_environment())
    store.finish_experiment(experiment_id, summary.to_dict())
    return exp
