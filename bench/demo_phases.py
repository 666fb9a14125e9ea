# python bench/demo_phases.py [--dtype float32|int8] [--train-dtype float32] [--set KEY=VALUE ...] [--experiment examples/sst2.yaml]
"""The demo's wall time, phase by phase, from a cold store (nothing reused: no cached calls, no
fine-tune on disk). The embedded model's one-off dequantisation is done first and not counted.
`--dtype` overrides the experiment's (float32 reproduces the precision of the "before" figures in
BENCHMARKS.md); `--set` changes any other field as `tuneoff run --set` does (e.g. `--set 'adaptive={chunk: 32}'`);
every other setting, item and step is the experiment's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

from tuneoff.config.experiment import load_experiment  # noqa: E402
from tuneoff.models import resolve_dir  # noqa: E402
from tuneoff.experiment import run_experiment  # noqa: E402
from tuneoff.store import Store  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experiment", default=str(ROOT / "examples/sst2.yaml"))
    parser.add_argument("--dtype", default=None, help="override the experiment's (evaluation) dtype")
    parser.add_argument("--train-dtype", default=None,
                        help="override every fine-tune arm's dtype (float32 plays a CPU without bf16)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="change a field of the experiment (repeatable), as `tuneoff run --set`")
    args = parser.parse_args()
    print(machine())
    exp = load_experiment(args.experiment, args.overrides)
    resolve_dir(exp.model)  # the one-off GGUF dequantisation is setup, not a phase of the run
    with tempfile.TemporaryDirectory() as tmp:
        arms = exp.arms if not args.train_dtype else [
            dataclasses.replace(a, finetune={**a.finetune, "dtype": args.train_dtype}) if a.finetune else a
            for a in exp.arms]
        exp = dataclasses.replace(exp, output=str(Path(tmp) / "runs"), dtype=args.dtype or exp.dtype, arms=arms)
        store = Store(Path(tmp) / "runs.sqlite")
        experiment_id = run_experiment(exp, store)
        phases = json.loads(store.experiment(experiment_id)["summary_json"])["phases"]
    print(f"{exp.name}, dtype {exp.dtype}, fine-tune dtype {args.train_dtype or 'as the arms say'}"
          f"{', ' + ' '.join(args.overrides) if args.overrides else ''}: phases (seconds)")
    total = phases.pop("total")
    for name, seconds in sorted(phases.items(), key=lambda kv: -kv[1]):
        print(f"  {name:40s} {seconds:8.1f}  {seconds / total:5.1%}")
    print(f"  {'total':40s} {total:8.1f}   target < 900 s (15 min)")


if __name__ == "__main__":
    main()
