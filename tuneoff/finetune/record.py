"""What a training run tells people and the store: a rich progress bar, training events as they
happen, and the final `TrainStats` (tokens, wall time, FLOPs, parameters, peak memory)."""

from __future__ import annotations

import resource
import sys

import torch

from ..records import TrainStats
from ..store import Store
from .collate import EncodeReport
from .loop import StepKind, StepReport
from .methods import ParamCounts


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # macOS reports bytes, Linux KiB


def make_stats(report: EncodeReport, state, counts: ParamCounts, flops: float, memory_mb: float,
               steps_per_epoch: int, resumed_from: int | None, processes: int = 1, device: str = "") -> TrainStats:
    return TrainStats(
        steps=state.step, epochs=round(state.step / steps_per_epoch, 3), examples=report.kept,
        dropped_examples=report.dropped_no_completion, prompt_truncated=report.prompt_truncated,
        tokens=state.tokens, label_tokens=state.label_tokens, padded_tokens=state.padded_tokens,
        seconds=round(state.seconds, 3),
        tokens_per_second=round(state.tokens / state.seconds, 1) if state.seconds else 0.0,
        flops=flops, trainable_parameters=counts.trainable, total_parameters=counts.total,
        peak_memory_mb=round(memory_mb, 1), final_loss=state.last_loss, best_eval_loss=state.best_eval,
        best_step=state.best_step, stopped_early=state.stopped_early, resumed_from_step=resumed_from,
        best_dev_metric=state.best_metric, dev_metrics=[list(m) for m in state.dev_metrics], processes=processes,
        device=device, max_length=report.max_length, truncated=report.truncated)


def store_hook(store: Store, run_id: int):
    """Every optimizer step, eval and checkpoint goes to the store as it happens."""

    def hook(r: StepReport) -> None:
        s = r.state
        if r.kind is StepKind.TRAIN:
            store.add_training_event(run_id, r.step, r.kind.value, loss=r.loss, lr=r.lr, tokens=s.tokens,
                                     seconds=s.seconds, payload={"grad_norm": r.grad_norm, "epoch": s.epoch,
                                                                 "label_tokens": s.label_tokens,
                                                                 "padded_tokens": s.padded_tokens})
        elif r.kind is StepKind.EVAL:
            store.add_training_event(run_id, r.step, r.kind.value, loss=r.loss, tokens=s.tokens, seconds=s.seconds,
                                     payload={"best": s.best_eval, "bad_evals": s.bad_evals})
        elif r.kind is StepKind.CHECKPOINT:
            store.add_training_event(run_id, r.step, r.kind.value, tokens=s.tokens, seconds=s.seconds,
                                     payload={"path": str(r.path)})

    return hook


def store_stats(store: Store, run_id: int, stats: TrainStats) -> None:
    for name in ("seconds", "tokens_per_second", "tokens", "label_tokens", "padded_tokens", "flops",
                 "trainable_parameters", "total_parameters", "peak_memory_mb", "final_loss", "best_eval_loss",
                 "dropped_examples", "prompt_truncated", "steps"):
        value = getattr(stats, name)
        store.set_metric(run_id, f"train_{name}", None if value is None else float(value))
    store.add_training_event(run_id, stats.steps, "summary", loss=stats.final_loss, tokens=stats.tokens,
                             seconds=stats.seconds, payload=stats.as_dict())


class ProgressBar:
    """A rich progress bar over optimizer steps: loss, tokens/s, ETA. Silent without a console."""

    def __init__(self, console, total: int, start: int, description: str):
        self.console, self.total, self.start, self.description = console, total, start, description
        self.progress = self.task = None

    def __enter__(self) -> "ProgressBar":
        if self.console is None:
            return self
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tps]} tok/s"),
                                 TextColumn("ETA"), TimeRemainingColumn(), console=self.console)
        self.progress.start()
        self.task = self.progress.add_task(self.description, total=self.total, completed=self.start,
                                           loss="-", tps="-")
        return self

    def __call__(self, r: StepReport) -> None:
        if self.progress is None or r.kind is not StepKind.TRAIN:
            return
        tps = r.state.tokens / r.state.seconds if r.state.seconds else 0.0
        self.progress.update(self.task, completed=r.step, loss=f"{r.loss:.4f}", tps=f"{tps:.0f}")

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()
