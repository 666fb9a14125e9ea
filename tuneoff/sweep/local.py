"""`tuneoff run EXP --jobs N`: the experiment's units on N local processes, each unit as soon as the
units it needs have finished.

Workers are spawned (not forked: a forked copy of a process that has loaded torch can hang in its
thread pools) and each uses cores // N threads, so N jobs do not oversubscribe the machine. All of
them write the one store: SQLite serialises the writes (WAL, a 30 s busy timeout, each chunk one
transaction), an identical evaluation waits for the first and answers from its calls, and a model
folder two jobs would both train is trained by the first (`experiment.arms.train_arm` waits on its claim).
Each worker's output goes to a log file; the terminal shows units starting and ending.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from ..config.experiment import Experiment
from ..errors import TuneoffError
from ..locks import hold
from ..store import Store
from .job import finish_sweep, open_sweep, run_stored_unit, unit_file_name
from ..experiment import Unit, plan


@dataclass(frozen=True)
class Job:
    """What a worker process needs to run one unit (plain values: it crosses a process boundary)."""

    store: str
    """The store file's absolute path (each process opens its own connection)."""
    experiment_id: int
    unit: str
    log: str
    """The file the unit's output goes to."""


@dataclass(frozen=True)
class Outcome:
    unit: str
    ok: bool
    seconds: float
    error: str = ""
    """One line: the project error's message, or the exception (its traceback is in the log)."""


def threads_per_job(jobs: int) -> int:
    """cores // jobs (at least 1), and no more than OMP_NUM_THREADS where the user set it."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = max(1, cores // jobs)
    limit = os.environ.get("OMP_NUM_THREADS", "")
    return min(threads, int(limit)) if limit.isdigit() and int(limit) > 0 else threads


def run_jobs(exp: Experiment, store: Store, jobs: int, console=None) -> int:
    """Run the experiment's units on `jobs` processes; returns the experiment id (a failed unit: an
    error naming it and its log, after the units that did not need it have finished)."""
    if jobs < 1:
        raise TuneoffError("must be >= 1", field="jobs")
    with hold(exp.output_dir() / ".run.lock", f"running experiment '{exp.name}'"):
        began = time.perf_counter()
        experiment_id = open_sweep(exp, store)
        units, threads = plan(exp), threads_per_job(jobs)
        logs = exp.output_dir() / "logs" / f"experiment-{experiment_id}"
        logs.mkdir(parents=True, exist_ok=True)
        say = console.print if console is not None else (lambda text: None)
        say(f"experiment {experiment_id}: {exp.name} — {len(units)} units on {jobs} processes of {threads} "
            f"thread(s) each; store {store.path}; logs in {logs}")
        store_path = str(Path(store.path).absolute())
        failed = schedule(units, jobs, threads,
                          lambda u: Job(store_path, experiment_id, u.name, str(logs / f"{unit_file_name(u.name)}.log")),
                          say)
        if failed:
            listed = "; ".join(f"{name}: {why}" for name, why in failed.items())
            raise TuneoffError(f"{len(failed)} of {len(units)} units did not finish: {listed}", file=str(logs),
                               hint="their logs are in this folder; rerun the same command to resume (finished work "
                                    "is reused from the store)")
        finish_sweep(store, experiment_id, jobs=jobs, wall_seconds=time.perf_counter() - began)
    return experiment_id


def schedule(units: list[Unit], jobs: int, threads: int, job_of, say) -> dict[str, str]:
    """Run `units` on a pool of `jobs` spawned workers, each unit once the units it needs are done,
    in plan order among those ready; returns unit -> why, for units that failed or were skipped."""
    pending, running, done, failed = list(units), {}, set(), {}
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(threads,))
    try:
        while pending or running:
            for unit in list(pending):
                blocked = [n for n in unit.needs if n in failed]
                if blocked:
                    pending.remove(unit)
                    failed[unit.name] = f"skipped, it needs {', '.join(blocked)}"
                elif len(running) < jobs and all(n in done for n in unit.needs):
                    pending.remove(unit)
                    running[pool.submit(_work, job_of(unit))] = unit
                    say(f"[dim]started {unit.name}[/dim]")
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                unit = running.pop(future)
                outcome = _outcome(future, unit)
                if outcome.ok:
                    done.add(unit.name)
                    say(f"{unit.name} done in {outcome.seconds:.1f} s")
                else:
                    failed[unit.name] = outcome.error
                    say(f"[red]{unit.name} failed[/red]: {outcome.error}")
    except BrokenProcessPool:  # a worker died: the pool takes no more work
        failed.update({u.name: "not run: a worker process died" for u in [*pending, *running.values()]})
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)  # Ctrl-C: the workers got it too, and keep their work
        raise
    pool.shutdown()
    return failed


def _outcome(future: Future, unit: Unit) -> Outcome:
    try:
        return future.result()
    except BrokenProcessPool:
        return Outcome(unit.name, False, 0.0, "its worker process died (killed, or out of memory)")


def _init_worker(threads: int) -> None:
    # set before the worker imports torch or numpy: their thread pools read these once
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)


_BACKENDS: dict = {}
"""The models this worker process has loaded, by spec: its next units reuse them."""


def _work(job: Job) -> Outcome:
    """One unit in a worker process; every error comes back as an Outcome (exceptions may not pickle)."""
    from rich.console import Console

    began = time.perf_counter()
    with open(job.log, "a", encoding="utf-8") as log:
        console = Console(file=log, width=120, force_terminal=False)
        try:
            store = Store(job.store)
            import torch  # after the store opened: a job that cannot start does not pay for the import

            torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
            try:
                run_stored_unit(store, job.experiment_id, job.unit, console=console, backends=_BACKENDS)
            finally:
                store.close()
        except TuneoffError as exc:
            console.print(f"error: {exc.render()}", highlight=False)
            return Outcome(job.unit, False, time.perf_counter() - began, f"{exc.message} (log: {job.log})")
        except Exception as exc:  # our bug: its traceback goes to the log
            log.write(traceback.format_exc())
            return Outcome(job.unit, False, time.perf_counter() - began,
                           f"{type(exc).__name__}: {exc} (log: {job.log})")
    return Outcome(job.unit, True, time.perf_counter() - began)
