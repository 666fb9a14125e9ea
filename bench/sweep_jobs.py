# python bench/sweep_jobs.py [--jobs 1 2] [--experiment examples/sst2.yaml]
"""Wall time of `tuneoff run --jobs N` for each N, each from a cold store and an empty output folder
(nothing reused: no cached call, no trained model). Without `--experiment` it times the sweep tests'
experiment on the tiny random Llama (tests/test_sweep.py: 10 units, every kind); with one, that
experiment as written, only its output moved to a temporary folder. The numbers must agree across N
(the report's test p-value and each arm's metric are printed to show it); the times are what differ.
Run it on a quiet machine: N processes share the cores, so other load distorts the ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT / "tests"))
from common import machine  # noqa: E402

from tuneoff.compare.rebuild import comparison_from_store  # noqa: E402
from tuneoff.config.experiment import Experiment, load_experiment  # noqa: E402
from tuneoff.config.specs import from_dict  # noqa: E402
from tuneoff.experiment import run_experiment  # noqa: E402
from tuneoff.store import Store  # noqa: E402
from tuneoff.sweep import run_jobs, threads_per_job  # noqa: E402


def tiny_experiment(tmp: Path) -> Experiment:
    from conftest import build_tiny_llama, build_tokenizer
    from test_sweep import spec

    tok = build_tokenizer()
    model = tmp / "tiny-llama"
    build_tiny_llama(tok).save_pretrained(model)
    tok.save_pretrained(model)
    return from_dict(Experiment, spec(model, tmp / "unused"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experiment", default=None, help="an experiment YAML (default: the sweep tests' tiny one)")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        exp = load_experiment(args.experiment) if args.experiment else tiny_experiment(Path(tmp))
        for jobs in args.jobs:
            folder = Path(tmp) / f"jobs-{jobs}"
            run = dataclasses.replace(exp, output=str(folder / "out"))
            store = Store(folder / "store.sqlite")
            began = time.perf_counter()
            experiment_id = run_experiment(run, store) if jobs == 1 else run_jobs(run, store, jobs)
            wall = time.perf_counter() - began
            c = comparison_from_store(store, experiment_id)
            metrics = ", ".join(f"{a.name} {a.metric:.3f}" for a in c.arms)
            test = f"; paired test p={c.test.p_value:.4f}" if c.test else ""
            print(f"--jobs {jobs} ({threads_per_job(jobs)} thread(s) each): {wall:.1f} s wall; {metrics}{test}")


if __name__ == "__main__":
    main()
