# python bench/processes.py [--n 128] [--processes 2] [--dtype auto|float32] [--model embedded:smollm2-135m-instruct]
"""Data-parallel fine-tuning: one LoRA run on 1 process and on N (accelerate, DDP; gloo on a CPU).

Both runs are `tuneoff finetune examples/sst2.yaml` with the same arm, data, seed and global batch
(batch 8, one epoch over `--n` SST-2 training examples, LoRA r=16 on all linear layers, dropout 0 so
that both compute the same optimisation up to float summation order). Prints the largest per-step
loss difference, the largest difference of the trained adapter weights, and the wall times: the
training loop's own (`TrainStats.seconds`, the main process's) and the whole command's (process
start and model load included). On a CPU the N processes split its cores: 1 process x C threads
against N processes x C/N threads each. Timings need a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def train(out: Path, arm: Path, model: str, processes: int, threads: int) -> tuple[dict, list[float], float]:
    """(training stats, per-step losses, whole-command seconds) of one `tuneoff finetune`."""
    from tuneoff.store import Store

    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    store = out.parent / f"{out.name}.sqlite"
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tuneoff", "finetune", str(ROOT / "examples" / "sst2.yaml"), "--arm",
                    str(arm), "--output", str(out), "-m", model, "--store", str(store),
                    "--num-processes", str(processes)], env=env, check=True, cwd=ROOT)
    wall = time.perf_counter() - began
    meta = json.loads((out / "tuneoff.json").read_text())
    losses = [e["loss"] for e in Store(store).training_events(meta["run_id"], "train")]
    return meta["stats"], losses, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128, help="training examples (batch 8: n/8 steps)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct")
    parser.add_argument("--dtype", default="auto", help="the arm's dtype: auto (bf16 where native) or float32")
    args = parser.parse_args()
    from safetensors.torch import load_file

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        arm = Path(tmp) / "lora.yaml"
        arm.write_text(f"method: lora\nlora: {{r: 16, alpha: 32, dropout: 0.0}}\nn_train: {args.n}\nepochs: 1\n"
                       f"batch_size: 8\nlearning_rate: 2.0e-4\nwarmup_ratio: 0.0\ndtype: {args.dtype}\n")
        runs = {1: train(Path(tmp) / "one", arm, args.model, 1, cores),
                args.processes: train(Path(tmp) / "many", arm, args.model, args.processes,
                                      max(1, cores // args.processes))}
        weights = [load_file(str(Path(tmp) / d / "adapter_model.safetensors")) for d in ("one", "many")]
    (s1, l1, w1), (sn, ln, wn) = runs[1], runs[args.processes]
    print(f"machine: {machine()}")
    print(f"{args.model}, LoRA r=16, {s1['steps']} steps of 8 examples, dtype {args.dtype}")
    print(f"max |loss(1) - loss({args.processes})| over {len(l1)} steps: {max(abs(a - b) for a, b in zip(l1, ln)):.2e}"
          f"; max |weight difference|: {max((weights[0][k] - weights[1][k]).abs().max().item() for k in weights[0]):.2e}")
    for n, (stats, _, wall) in runs.items():
        print(f"{n} process(es) x {cores if n == 1 else max(1, cores // n)} thread(s): training {stats['seconds']:.1f} s "
              f"({stats['tokens_per_second']:.0f} tokens/s), whole command {wall:.1f} s, final loss {stats['final_loss']:.4f}")


if __name__ == "__main__":
    main()
