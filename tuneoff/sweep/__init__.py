"""Sweeps: one experiment's plan (`tuneoff.experiment.plan`) done by parallel executors — `tuneoff run
EXP --jobs N` on local processes, or `--emit-slurm DIR` as a Slurm job array — all writing one store,
the comparison then rebuilt from it as after a single run (`job`: one unit in this process, and the
end of a sweep; `local`: the process pool; `slurm`: the emitted scripts)."""

from .command import run_sweep
from .job import finish_sweep, run_stored_unit
from .local import run_jobs, threads_per_job
from .slurm import SlurmFiles, SlurmResources, emit_slurm

__all__ = ["SlurmFiles", "SlurmResources", "emit_slurm", "finish_sweep", "run_jobs", "run_stored_unit", "run_sweep",
           "threads_per_job"]
