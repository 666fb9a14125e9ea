"""`tuneoff run`: one typed plan of an experiment's units (`plan.py`), done in this process
(`run.py`) or fanned out by `tuneoff.sweep` (`--jobs N`, Slurm); the same units either way.

    plan.py      the units (UnitKind: arm, arms, shots, n_train, consistency, flexibility) and their needs
    context.py   what a process holds while it works: data, loaded models, each arm's `ArmState`
    arms.py      one arm's chain: train or tune, evaluate, serving probe, out of domain, repeats
    tuning.py    fine-tune arms tuned on dev (successive halving, epoch-end dev metric)
    adaptive.py  adaptive test evaluation: interleaved chunks, anytime-valid looks, stops
    studies.py   curve points, consistency, flexibility, the adaptive arms unit
    judging.py   the judge pass over the arms' stored test outputs
    run.py       run_experiment (every unit in order) and run_unit (one unit, as a sweep's job does)
"""

from .context import RunContext
from .plan import Unit, UnitKind, plan, unit_named, waves
from .run import run_experiment, run_unit

__all__ = ["RunContext", "Unit", "UnitKind", "plan", "run_experiment", "run_unit", "unit_named", "waves"]
