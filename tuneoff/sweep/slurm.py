"""`tuneoff run EXP --emit-slurm DIR`: the experiment's units as a Slurm job array.

    DIR/jobs.txt       one unit's command per line (the units of `--jobs N`), in dependency waves
    DIR/array.sbatch   one array task per line of jobs.txt ($SLURM_ARRAY_TASK_ID picks it)
    DIR/finish.sbatch  after the last wave: checks every unit, rebuilds the comparison, writes the report
    DIR/submit.sh      each wave as an array after the one before (afterok), then finish.sbatch

Emitting stores the experiment's row, so every job links its runs to one experiment id. The jobs run
on other machines against the same store file, output folder and data: all of them must be on a
filesystem every node mounts at the same path (README, "Running sweeps in parallel and on a Slurm
cluster").
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..config.experiment import Experiment
from ..errors import TuneoffError
from ..store import NETWORK_FILESYSTEMS, Store, filesystem_type
from .job import open_sweep
from ..experiment import plan, waves


@dataclass(frozen=True)
class SlurmResources:
    """The #SBATCH defaults the scripts are written with; `bash submit.sh --mem=64G ...` overrides any
    of them (and adds --partition, --account, --gres) for one submission."""

    cpus_per_task: int = 4
    """Cores per unit; the unit's torch threads follow it (OMP_NUM_THREADS)."""
    mem: str = "16G"
    """Memory per unit: fine-tuning a 135M-parameter model peaks near 3 GB; a 1B model needs ~16 GB."""
    time: str = "04:00:00"
    """Wall-time limit per unit: the longest is a fine-tune arm with its search on dev and its repeats."""
    finish_time: str = "00:30:00"
    """Wall-time limit of the finish job (no model is loaded: a rebuild from the store and the report)."""


@dataclass(frozen=True)
class SlurmFiles:
    """What `emit_slurm` wrote."""

    directory: Path
    experiment_id: int
    """The experiment row every job links its runs to."""
    units: list[str]
    """Unit names, in the order of jobs.txt."""
    waves: list[tuple[int, int]] = field(default_factory=list)
    """(first, last) line of jobs.txt (0-based) of each dependency wave."""
    shared: bool = False
    """Whether the store is on a filesystem known to be shared between machines (NFS, Lustre, ...)."""


def emit_slurm(exp: Experiment, exp_path: Path, store: Store, directory: Path, python: str | None = None,
               resources: SlurmResources = SlurmResources(), overrides: Sequence[str] = ()) -> SlurmFiles:
    """Write the job array for `exp` (read from `exp_path` with `overrides`, `--set KEY=VALUE`) into
    `directory`; returns what was written."""
    directory = Path(directory).absolute()
    python = python or sys.executable
    for what, text in (("--emit-slurm folder", str(directory)), ("python", python)):
        if re.search(r"[\s\"'$`\\]", text):
            raise TuneoffError(f"the {what} path {text!r} has spaces or shell characters, which #SBATCH lines and "
                               f"job commands cannot carry", field="emit-slurm", hint="use a plain path")
    experiment_id = open_sweep(exp, store)
    grouped = waves(plan(exp))
    ordered = [u.name for wave in grouped for u in wave]
    spans, start = [], 0
    for wave in grouped:
        spans.append((start, start + len(wave) - 1))
        start += len(wave)
    base = [str(Path(exp_path).absolute()), "--store", str(Path(store.path).absolute()),
            "--experiment-id", str(experiment_id), *(arg for o in overrides for arg in ("--set", o))]
    (directory / "logs").mkdir(parents=True, exist_ok=True)
    (directory / "jobs.txt").write_text("".join(_command(python, *base, "--unit", u) + "\n" for u in ordered))
    name = re.sub(r"[^\w.-]", "_", exp.name)[:60]
    (directory / "array.sbatch").write_text(_array(exp, experiment_id, name, directory, len(ordered), resources))
    (directory / "finish.sbatch").write_text(_finish(exp, name, directory, _command(python, *base, "--finish"),
                                                     resources))
    (directory / "submit.sh").write_text(_submit(exp, directory, spans))
    (directory / "submit.sh").chmod(0o755)
    shared = filesystem_type(Path(store.path).absolute().parent) in NETWORK_FILESYSTEMS
    return SlurmFiles(directory, experiment_id, ordered, spans, shared)


def _command(python: str, *args: str) -> str:
    # the folder it was emitted from: a model path the experiment gives relative to it resolves as here;
    # TUNEOFF_PYTHON: another interpreter with tuneoff installed, where the nodes see this one elsewhere
    return (f'cd {shlex.quote(str(Path.cwd()))} && "${{TUNEOFF_PYTHON:-{python}}}" -m tuneoff run '
            + " ".join(shlex.quote(a) for a in args))


def _array(exp: Experiment, experiment_id: int, name: str, directory: Path, n: int, r: SlurmResources) -> str:
    return f"""#!/bin/bash
# Experiment '{exp.name}' (id {experiment_id}) as a Slurm job array: task i runs line i+1 of jobs.txt.
# Submit it with `bash {directory}/submit.sh [sbatch options]`: that submits this file once per
# dependency wave (--array=FIRST-LAST, each wave after the one before) and then finish.sbatch.
# Options given to submit.sh override the defaults below, e.g. --partition=gpu --gres=gpu:1 --mem=64G.
#SBATCH --job-name=tuneoff-{name}
#SBATCH --array=0-{n - 1}
#SBATCH --cpus-per-task={r.cpus_per_task}
#SBATCH --mem={r.mem}
#SBATCH --time={r.time}
#SBATCH --output={directory}/logs/%A_%a.out
#SBATCH --kill-on-invalid-dep=yes
# --cpus-per-task: the unit's torch threads (OMP_NUM_THREADS below); 4 suit a 135M model on CPU.
# --mem: fine-tuning a 135M-parameter model peaks near 3 GB; a 1B model needs ~16 GB.
# --time: the longest unit is a fine-tune arm with its search on dev and its repeats.
# --kill-on-invalid-dep: a wave whose predecessor failed is cancelled instead of pending forever.
# A GPU (--gres=gpu:1) is used when the node has one; CUDA needs torch's CUDA build in the environment.
set -euo pipefail
export OMP_NUM_THREADS="${{SLURM_CPUS_PER_TASK:-1}}"
line=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {directory}/jobs.txt)
echo "unit $SLURM_ARRAY_TASK_ID of experiment {experiment_id}: $line"
eval "$line"
"""


def _finish(exp: Experiment, name: str, directory: Path, command: str, r: SlurmResources) -> str:
    return f"""#!/bin/bash
# After every unit of experiment '{exp.name}': check they all finished, record the phases, rebuild the
# comparison from the store and write the report to {exp.output_dir().absolute()}/. submit.sh submits it
# with --dependency=afterok on every wave of array.sbatch.
#SBATCH --job-name=tuneoff-{name}-finish
#SBATCH --cpus-per-task=1
#SBATCH --mem=4G
#SBATCH --time={r.finish_time}
#SBATCH --output={directory}/logs/finish_%j.out
#SBATCH --kill-on-invalid-dep=yes
set -euo pipefail
{command}
"""


def _submit(exp: Experiment, directory: Path, spans: list[tuple[int, int]]) -> str:
    lines = ["#!/bin/bash",
             f"# bash {directory}/submit.sh [sbatch options]: the job array of '{exp.name}', one wave after the",
             "# other (a wave's units need units of the waves before it), then finish.sbatch. Options are passed",
             "# to every sbatch call and override the scripts' #SBATCH defaults (e.g. --partition=NAME --account=NAME).",
             "# TUNEOFF_ARRAY_MAX=M runs at most M units of a wave at once (fewer writers on a network store).",
             "set -euo pipefail", f"cd {directory}", 'throttle="${TUNEOFF_ARRAY_MAX:+%$TUNEOFF_ARRAY_MAX}"',
             "after=\"\""]
    for i, (first, last) in enumerate(spans):
        dependency = '${after:+--dependency=afterok$after}'
        lines += [f'job=$(sbatch --parsable "$@" --array={first}-{last}$throttle {dependency} array.sbatch)',
                  'job="${job%%;*}"  # --parsable prints JOBID or JOBID;CLUSTER',
                  f'echo "wave {i}: units {first}-{last} of jobs.txt, job $job"', 'after="$after:$job"']
    lines += ['job=$(sbatch --parsable "$@" --dependency=afterok$after finish.sbatch)',
              'echo "finish: job ${job%%;*} (then the report is written)"']
    return "\n".join(lines) + "\n"
