"""Several training processes, one loop: data parallelism through Hugging Face accelerate.

    tuneoff finetune TASK --arm lora --output out/lora --num-processes 2
    accelerate launch --multi_gpu --num_processes 2 -m tuneoff finetune TASK --arm lora --output out/lora

Both start the same command N times (accelerate's launcher, torchrun underneath). Each process builds the
same model from the same seed and runs the same `Loop` over the same windows of micro-batches, taking a
disjoint part of every micro-batch (`Processes.shard`: examples rank, rank + N, ...). **The global batch is
the one-process run's**, `batch_size x grad_accum` examples per optimizer step whatever N: the loss of each
part is divided by the whole window's label tokens and multiplied by N, so DDP's average over the N
processes is exactly the one-process gradient (up to float summation order), and steps, learning-rate
schedule, checkpoints and the training record mean the same on any number of processes; a run may even
resume on another number of them. What N buys is each process computing 1/N of every batch.

Only the main process writes: checkpoints (with every process's RNG state, so dropout replays exactly on
resume), the best weights, the store's training events, the output model. The others wait for it at a
barrier. A process that dies (an error, `kill -9`) makes torchrun stop the rest; the last complete
checkpoint stays, and `--resume` continues from it.

With one process, `Processes()` holds no accelerator and every method is the identity, so the loop runs
exactly as it does without this module. accelerate is not asked to manage a single process: its state is
a process-wide singleton that refuses a second `Accelerator` with other settings (`cpu=True` after CUDA),
and tests and `tuneoff run` train many models, on varying devices, in one process.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from ..errors import TuneoffError

DATA_PARALLEL = ("MULTI_CPU", "MULTI_GPU")
"""accelerate's distributed types this loop runs (DDP: every process holds the whole model). FSDP and
DeepSpeed shard weights and optimizer state, which the checkpoints and the epoch-end evaluation here read
whole: their configs are refused with a message rather than half supported."""


def launched() -> bool:
    """Whether this process is one of several that `accelerate launch` / torchrun started."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@dataclass
class Processes:
    """The training processes this one belongs to, as the loop sees them. Without an accelerator (one
    process), every method is the identity."""

    accelerator: Any = None
    """An `accelerate.Accelerator` over the process group; None: this process trains alone."""

    @classmethod
    def from_environment(cls, device: str = "auto") -> "Processes":
        """The group `accelerate launch` / torchrun started this process in, else one process. `device`
        (the arm's) only says whether the group runs on the CPU (gloo) or on CUDA (NCCL, one GPU each)."""
        if not launched():
            return cls()
        for plugin in ("FSDP", "DEEPSPEED"):  # (on a CPU accelerate would quietly run these as plain DDP)
            if os.environ.get(f"ACCELERATE_USE_{plugin}", "").lower() == "true":
                _refuse(plugin)
        from accelerate import Accelerator

        cpu = device == "cpu" or not torch.cuda.is_available()
        # precision is the arm's dtype (the loop's bf16 autocast), on one process or many: accelerate's
        # mixed_precision stays off. The scheduler steps once per optimizer step, as on one process,
        # because the global batch does not grow with the number of processes.
        accelerator = Accelerator(cpu=cpu, mixed_precision="no", step_scheduler_with_optimizer=False)
        if accelerator.distributed_type.name not in DATA_PARALLEL:
            _refuse(accelerator.distributed_type.name)
        return cls(accelerator)

    @property
    def rank(self) -> int:
        return self.accelerator.process_index if self.accelerator else 0

    @property
    def count(self) -> int:
        return self.accelerator.num_processes if self.accelerator else 1

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process if self.accelerator else True

    def device(self) -> str | None:
        """The device this process trains on (`cpu` or `cuda:N`); None with one process: the arm decides."""
        if not self.accelerator:
            return None
        d = self.accelerator.device
        return "cpu" if d.type == "cpu" else f"cuda:{d.index or 0}"

    def prepare(self, objective, optimizer, scheduler):
        """(objective, optimizer, scheduler) ready to train: wrapped for gradient synchronisation."""
        if not self.accelerator:
            return objective, optimizer, scheduler
        return self.accelerator.prepare(objective, optimizer, scheduler)

    def shard(self, indices: Sequence[int]) -> tuple[list[int], float]:
        """This process's part of one micro-batch, and its weight in the loss. A process left without
        examples (a last micro-batch smaller than the process count) still runs one, weighted 0: every
        process must take part in each gradient synchronisation."""
        part = list(indices[self.rank::self.count])
        return (part, 1.0) if part else (list(indices[:1]), 0.0)

    def no_sync(self, objective, sync: bool):
        """Accumulate gradients locally until the last micro-batch of a window, which synchronises them."""
        return nullcontext() if sync or not self.accelerator else self.accelerator.no_sync(objective)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward() if not self.accelerator else self.accelerator.backward(loss)

    def sum(self, values: list[float]) -> list[float]:
        """Each value summed over the processes (float64, so token counts stay exact)."""
        if not self.accelerator:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.accelerator.device)
        return self.accelerator.reduce(t, reduction="sum").tolist()

    def share(self, value):
        """The main process's `value`, in every process."""
        if not self.accelerator:
            return value
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value], from_process=0)[0]

    def gather(self, value) -> list:
        """Every process's `value`, by rank, in every process."""
        if not self.accelerator:
            return [value]
        from accelerate.utils import gather_object

        return gather_object([value])

    def wait(self) -> None:
        """A barrier: every process waits here until all have come (after the main process wrote)."""
        if self.accelerator:
            self.accelerator.wait_for_everyone()

    def fork_rng(self, seed: int) -> None:
        """Give this process its own random stream (dropout masks), if it is not the main one: the main
        process keeps the one-process stream, the others would otherwise draw the same masks."""
        if self.rank:
            torch.manual_seed(seed * 1_000_003 + 7919 * self.rank)


def launch(command: list[str], processes: int, config_file: Path | None = None) -> None:
    """Run `python -m tuneoff COMMAND...` as `processes` processes through accelerate's launcher and
    wait for them. A process that fails (an error, a kill) stops the others and is a TuneoffError here."""
    from accelerate.commands.launch import launch_command, launch_command_parser

    if processes < 2:
        raise TuneoffError(f"{processes} process(es) is no group: several processes need 2 or more",
                           field="num-processes", hint="e.g. --num-processes 2 (one per GPU, or per CPU core group)")
    args = ["--num_processes", str(processes), "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "--main_process_port", "0"]  # 0: a free port, so runs never collide
    if config_file is not None:
        if not Path(config_file).is_file():
            raise TuneoffError("no such accelerate config file", file=str(config_file), field="accelerate-config",
                               hint="write one with `accelerate config --config_file FILE`, or leave the option out")
        args += ["--config_file", str(config_file)]
    if config_file is None or _distributed_type(config_file) in ("NO", "MULTI_CPU"):
        # accelerate's name for its torchrun launcher; where CUDA is missing the processes meet over gloo
        # (without it, and without MPI, accelerate would start a single process)
        args.append("--multi_gpu")
    try:
        launch_command(launch_command_parser().parse_args([*args, "-m", "tuneoff", *command]))
    except Exception as exc:  # noqa: BLE001 (torchrun's ChildFailedError, accelerate's CalledProcessError)
        failures = getattr(exc, "failures", {}) or {}
        said = ", ".join(f"process {rank} {_exit(f.exitcode)}" for rank, f in sorted(failures.items()))
        raise TuneoffError(f"training stopped: {said or exc}", field="num-processes",
                           hint="the last complete checkpoint stays: rerun the same command with --resume") from None


def _refuse(kind: str) -> None:
    raise TuneoffError(f"accelerate's {kind} is not supported: tuneoff trains data-parallel (DDP), each process "
                       "holding the whole model", field="accelerate-config",
                       hint="use an accelerate config with distributed_type: MULTI_GPU (examples/accelerate/)")


def _distributed_type(config_file: Path) -> str:
    from accelerate.commands.config.config_args import load_config_from_file

    return str(getattr(load_config_from_file(str(config_file)).distributed_type, "name", "NO"))


def _exit(code: int) -> str:
    return f"was killed (signal {-code})" if code < 0 else f"exited with {code}"
