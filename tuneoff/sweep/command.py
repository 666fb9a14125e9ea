"""The sweep options of `tuneoff run` (`--jobs`, `--emit-slurm`, and the job lines' `--unit`,
`--experiment-id`, `--finish`): which of them was asked for, checked, and done."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..config.experiment import Experiment
from ..errors import TuneoffError
from ..store import Store
from .job import finish_sweep, run_stored_unit
from .local import run_jobs
from .slurm import emit_slurm


def run_sweep(exp: Experiment, exp_path: Path, store: Store, console, jobs: int = 1, emit: Path | None = None,
              unit: str | None = None, experiment_id: int | None = None, finish: bool = False,
              overrides: Sequence[str] = ()) -> int | None:
    """Do what the options ask; returns the experiment id whose report is due now (None: none yet)."""
    if (unit is not None or finish) and experiment_id is None:
        raise TuneoffError("--unit and --finish belong to a sweep: they need --experiment-id", field="experiment-id",
                           hint="the lines of an emitted jobs.txt carry it")
    if sum((emit is not None, unit is not None, finish, jobs != 1)) > 1:
        raise TuneoffError("--jobs, --emit-slurm, --unit and --finish are one each", field="jobs",
                           hint="emit the Slurm array or run locally in parallel, not both")
    if emit is not None:
        files = emit_slurm(exp, exp_path, store, emit, overrides=overrides)
        first, last = files.waves[0], files.waves[-1]
        console.print(f"experiment {files.experiment_id}: {len(files.units)} units in {len(files.waves)} dependency "
                      f"wave(s) written to {files.directory} (jobs.txt lines {first[0]}-{last[1]}, array.sbatch, "
                      f"finish.sbatch, submit.sh)\nsubmit: bash {files.directory / 'submit.sh'} [sbatch options, "
                      f"e.g. --partition=NAME]")
        if not files.shared:
            console.print(f"[yellow]note: the store {store.path} is not on a filesystem known to be shared (NFS, "
                          f"Lustre, GPFS, ...): jobs on other nodes must see it, the data and "
                          f"{exp.output_dir()} at the same paths[/yellow]")
        return None
    if unit is not None:
        run_stored_unit(store, experiment_id, unit, exp, console)
        return None
    if finish:
        finish_sweep(store, experiment_id, exp)
        return experiment_id
    return run_jobs(exp, store, jobs, console)
