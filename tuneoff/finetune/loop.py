"""The one training loop, for every method: AdamW, warmup + decay, gradient accumulation, eval
loss, early stopping, atomic checkpoints, exact resume, and a hard stop on a non-finite loss.

Why a compact loop of our own rather than transformers' `Trainer` / TRL's `SFTTrainer`: what this
module must guarantee sits in their private parts. Their checkpoints are written in place (a crash
mid-write leaves a half checkpoint that resume then loads); making them atomic means overriding
`Trainer._save_checkpoint`, private and reworked between releases. Their resume replays the
dataloader to skip seen batches and restores RNG in private helpers, so "resumed == uninterrupted"
would rest on internals we do not control. A NaN loss there is filtered from the logs
(`logging_nan_inf_filter`), not stopped. Owning the step also lets the loss skip the vocabulary
projection on prompt tokens and count exactly the tokens the record needs. The cost is ~250 lines
in which every step is visible. Methods differ only in `requires_grad` (see `methods.py`), so full,
freeze and LoRA all run this same code, on one process or several (`parallel.py`: each process takes a
disjoint part of every micro-batch; one process is the identity of that).
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..errors import TuneoffError
from .checkpoint import (TrainState, checkpoint_path, clean_incomplete, complete_checkpoints, has_rng_of, load_best,
                         load_checkpoint, rng_state, save_best, save_checkpoint)
from .collate import IGNORE, Encoded, collate, label_tokens, micro_batches
from .parallel import Processes
from .spec import FinetuneArm


class StepKind(str, Enum):
    """What a `StepReport` reports (also the kind of the training event the store keeps for it)."""

    TRAIN = "train"
    """An optimizer step."""
    EVAL = "eval"
    """An evaluation (loss on the eval split, or the dev metric at an epoch end)."""
    CHECKPOINT = "checkpoint"


@dataclass
class StepReport:
    """What a hook sees: after each optimizer step, each eval, each checkpoint."""

    kind: StepKind
    step: int
    total_steps: int
    state: TrainState
    loss: float | None = None
    lr: float | None = None
    grad_norm: float | None = None
    path: Path | None = None
    """The checkpoint written (kind `checkpoint`)."""
    model: object = None


Hook = Callable[[StepReport], None]
Scorer = Callable[[object, int, int], float]
"""(model, epoch, step) -> dev main metric (higher is better), called at each epoch end in eval mode,
without gradients, under the training autocast."""


class NonFiniteLoss(TuneoffError):
    """The loss (or the gradient) became NaN or infinite; training stopped before the bad update."""


def steps_per_epoch(n_examples: int, arm: FinetuneArm) -> int:
    return math.ceil(math.ceil(n_examples / arm.batch_size) / arm.grad_accum)


def total_steps(n_examples: int, arm: FinetuneArm) -> int:
    planned = arm.epochs * steps_per_epoch(n_examples, arm)
    return min(planned, arm.max_steps) if arm.max_steps else planned


def build_optimizer(model, arm: FinetuneArm, n_steps: int):
    """AdamW with decay on matrices only, and a warmup-then-decay schedule over `n_steps`."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": arm.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=arm.lr, betas=(0.9, 0.999), eps=1e-8)
    warmup = arm.warmup_steps if arm.warmup_steps is not None else round(arm.warmup_ratio * n_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if arm.lr_schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, n_steps - warmup))
        return 1.0 - progress if arm.lr_schedule == "linear" else 0.5 * (1 + math.cos(math.pi * progress))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# Decoder-only families whose CausalLM forward is exactly `head(decoder(x))` (no logit scaling or
# soft-capping): for them the LM head runs only where a label is, skipping the vocabulary
# projection on prompt tokens (on short classification answers, most of the head's compute).
_HEAD_ON_LABELS = {"llama", "mistral", "qwen2", "qwen3", "smollm3"}


def loss_sum(model, batch: dict[str, torch.Tensor], amp) -> torch.Tensor:
    """Summed next-token cross-entropy over positions whose label is not IGNORE (fp32)."""
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    with amp:
        if getattr(base.config, "model_type", "") in _HEAD_ON_LABELS:
            hidden = base.get_decoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                        use_cache=False).last_hidden_state
            logits = base.get_output_embeddings()(hidden[:, :-1][keep])
        else:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           use_cache=False).logits[:, :-1][keep]
    return F.cross_entropy(logits.float(), targets[keep], reduction="sum")


def autocast(arm: FinetuneArm, device: torch.device):
    if arm.bf16(device.type):
        # master weights and optimizer stay fp32; matmuls run in bf16
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


class LabelLoss(torch.nn.Module):
    """The training objective as a module: `loss_sum` of the model on a batch, under the arm's autocast.

    Data-parallel wrappers (DDP) synchronise the gradients of what runs through their own forward, and
    `loss_sum` reaches into the model's decoder and head: the module they wrap is this one."""

    def __init__(self, model, arm: FinetuneArm, device: torch.device):
        super().__init__()
        self.model, self.arm, self.device = model, arm, device

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        return loss_sum(self.model, batch, autocast(self.arm, self.device))


@torch.no_grad()
def eval_loss(model, examples: Sequence[Encoded], arm: FinetuneArm, pad_id: int, device,
              processes: Processes | None = None) -> float:
    """Mean per-token loss on `examples` (dev), the training objective without its gradient; several
    processes each take every N-th batch and add up."""
    group = processes or Processes()
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(group.rank * arm.batch_size, len(examples), arm.batch_size * group.count):
        chunk = examples[i:i + arm.batch_size]
        total += loss_sum(model, collate(chunk, pad_id, device), autocast(arm, device)).item()
        count += label_tokens(chunk)
    model.train(was_training)
    total, count = group.sum([total, count])
    return total / max(1, count)


@dataclass
class Loop:
    """One training session over encoded examples; `run()` returns the final `TrainState`."""

    model: object
    train_set: list[Encoded]
    dev_set: list[Encoded]
    arm: FinetuneArm
    checkpoint_dir: Path
    pad_id: int
    device: torch.device
    hooks: Sequence[Hook] = ()
    scorer: Scorer | None = None
    """Selects the best epoch by the dev main metric (early stopping counts epochs without a better
    one, and the output holds the best epoch's weights); without it, the dev loss selects (eval_steps)."""
    pause_at_epoch: int | None = None
    """Stop once this many epochs are done, with a checkpoint to resume from: successive halving
    trains every candidate one rung, then resumes only the promising ones."""
    patience: int | None = None
    """With a scorer: stop after this many epoch ends without a better dev metric."""
    processes: Processes = field(default_factory=Processes)
    """The data-parallel group this loop is one process of (`parallel.py`); default: training alone."""

    def __post_init__(self):
        self.n_steps = total_steps(len(self.train_set), self.arm)
        self.optimizer, self.scheduler = build_optimizer(self.model, self.arm, self.n_steps)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        # what runs forward and backward: the model's loss, wrapped for gradient sync on several processes
        self.objective, self.optimizer, self.scheduler = self.processes.prepare(
            LabelLoss(self.model, self.arm, self.device), self.optimizer, self.scheduler)
        self.processes.fork_rng(self.arm.seed)
        self.state = TrainState()
        self.last_checkpoint: Path | None = None
        self.paused = False

    def resume(self) -> bool:
        """Load the latest complete checkpoint, if any; True if one was found. Half-written
        leftovers of a crash (no marker) are removed, never loaded."""
        group = self.processes
        if group.is_main:
            clean_incomplete(self.checkpoint_dir)
        group.wait()  # the others list the checkpoints once the main process has cleaned up
        found = complete_checkpoints(self.checkpoint_dir)
        if not found:
            return False
        self.state = load_checkpoint(found[-1], self.model, self.optimizer, self.scheduler, rank=group.rank)
        if not has_rng_of(found[-1], group.rank):  # written by fewer processes: this one starts its own stream
            group.fork_rng(self.arm.seed + self.state.step)
        self.last_checkpoint = found[-1]
        return True

    def run(self) -> TrainState:
        self.model.train()
        state, arm = self.state, self.arm
        session_start, seconds_before = time.perf_counter(), state.seconds
        while self._more():
            windows = self._windows(state.epoch)
            for window in windows[self._window_index(state.batch_in_epoch):]:
                self._step(window)
                state.batch_in_epoch += len(window)
                state.seconds = seconds_before + time.perf_counter() - session_start
                self._after_step()
                if not self._more(within_epoch=True):
                    break
            if state.batch_in_epoch >= math.ceil(len(self.train_set) / arm.batch_size):
                state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                if self.scorer is not None:
                    self._score_epoch()
                if self.pause_at_epoch is not None and state.epoch >= self.pause_at_epoch and self._more():
                    self._checkpoint()  # the epoch-end score is part of the state a resume needs
                    self.paused = True
                    return state
        self._finish()
        return state

    def _more(self, within_epoch: bool = False) -> bool:
        s = self.state  # (a paused loop returns from run() before asking again)
        return s.step < self.n_steps and not s.stopped_early and (within_epoch or s.epoch < self.arm.epochs)

    def _windows(self, epoch: int) -> list[list[list[int]]]:
        batches = micro_batches([len(e.input_ids) for e in self.train_set], self.arm.batch_size, self.arm.seed,
                                epoch, self.arm.group_by_length)
        return [batches[i:i + self.arm.grad_accum] for i in range(0, len(batches), self.arm.grad_accum)]

    def _window_index(self, batch_in_epoch: int) -> int:
        return batch_in_epoch // self.arm.grad_accum

    def _step(self, window: list[list[int]]) -> None:
        """One optimizer step over `grad_accum` micro-batches, normalised by their label tokens so
        accumulation equals one big batch (and N processes, each with a part of every micro-batch,
        equal one)."""
        s, arm, group = self.state, self.arm, self.processes
        n_labels = sum(label_tokens([self.train_set[i] for i in mb]) for mb in window)  # the whole window's
        total, tokens, padded = 0.0, 0, 0
        for k, mb in enumerate(window):
            part, weight = group.shard(mb)
            batch = collate([self.train_set[i] for i in part], self.pad_id, self.device)
            with group.no_sync(self.objective, sync=k == len(window) - 1):
                loss = self.objective(**batch)
                # x count: averaging the gradient over the processes divides it back out (1 on one process)
                group.backward(loss / n_labels * (weight * group.count))
            total += loss.item() * weight
            if weight:
                tokens += int(batch["attention_mask"].sum())
                padded += batch["input_ids"].numel()
        total, tokens, padded = group.sum([total, tokens, padded])
        s.tokens += int(tokens)
        s.padded_tokens += int(padded)
        s.label_tokens += n_labels
        mean = total / n_labels
        norm = torch.nn.utils.clip_grad_norm_(self.params, arm.max_grad_norm or float("inf"))
        if not math.isfinite(mean) or not math.isfinite(norm.item()):
            self.optimizer.zero_grad(set_to_none=True)
            self._non_finite("loss" if not math.isfinite(mean) else "gradient norm", mean)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        s.step += 1
        s.last_loss = mean
        s.losses.append((s.step, mean))
        self._emit(StepKind.TRAIN, loss=mean, lr=lr, grad_norm=norm.item())

    def _non_finite(self, what: str, loss: float) -> None:
        where = f"the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint else \
            "no checkpoint was written before it"
        raise NonFiniteLoss(
            f"training stopped: the {what} became {loss if what == 'loss' else 'non-finite'} at step "
            f"{self.state.step + 1} (epoch {self.state.epoch + 1}); {where}", field="learning_rate",
            hint=f"lower learning_rate (now {self.arm.lr:g}), keep max_grad_norm > 0, or train in float32; "
                 "rerun with --resume to continue from the last checkpoint")

    def _after_step(self) -> None:
        s, arm = self.state, self.arm
        if arm.eval_steps and s.step % arm.eval_steps == 0 and self.dev_set:
            self._evaluate()
        if s.step % arm.save_steps == 0 or s.stopped_early:
            self._checkpoint()

    def _score_epoch(self) -> None:
        s, group = self.state, self.processes
        value = None
        if group.is_main:  # the weights are the same in every process: one scores, all learn the value
            self.model.eval()
            with torch.no_grad(), autocast(self.arm, self.device):
                value = float(self.scorer(self.model, s.epoch, s.step))
            self.model.train()
        value = group.share(value)
        s.dev_metrics.append((s.epoch, s.step, value))
        if s.best_metric is None or value > s.best_metric:
            s.best_metric, s.best_step, s.bad_evals = value, s.step, 0
            self._save_best()
        else:
            s.bad_evals += 1
            s.stopped_early = bool(self.patience and s.bad_evals >= self.patience)
        self._emit(StepKind.EVAL, loss=None)

    def _evaluate(self) -> None:
        s = self.state
        loss = eval_loss(self.model, self.dev_set, self.arm, self.pad_id, self.device, self.processes)
        if self.scorer is not None:  # the dev metric selects; the loss is only recorded
            self._emit(StepKind.EVAL, loss=loss)
            return
        if s.best_eval is None or loss < s.best_eval:
            s.best_eval, s.best_step, s.bad_evals = loss, s.step, 0
            self._save_best()
        else:
            s.bad_evals += 1
            patience = self.arm.early_stopping_patience
            s.stopped_early = bool(patience and s.bad_evals >= patience)
        self._emit(StepKind.EVAL, loss=loss)

    def _save_best(self) -> None:
        if self.processes.is_main:
            save_best(self.checkpoint_dir, self.model)
        self.processes.wait()

    def _checkpoint(self) -> None:
        group = self.processes
        rng = group.gather(rng_state())  # every process's dropout stream, for an exact resume
        if group.is_main:
            self.last_checkpoint = save_checkpoint(self.checkpoint_dir, self.model, self.optimizer, self.scheduler,
                                                   self.state, self.arm.save_total_limit, rng)
        group.wait()  # the others go on once the checkpoint is whole
        self.last_checkpoint = checkpoint_path(self.checkpoint_dir, self.state.step)
        self._emit(StepKind.CHECKPOINT, path=self.last_checkpoint)

    def _finish(self) -> None:
        s = self.state
        if self.scorer is not None and (not s.dev_metrics or s.dev_metrics[-1][1] != s.step):
            self._score_epoch()  # stopped mid-epoch (max_steps): the final weights are a candidate too
        elif self.arm.eval_steps and self.dev_set and s.best_step != s.step and not s.stopped_early:
            self._evaluate()  # the final weights get an eval loss too, to compare with the best
        if s.best_step is not None and s.best_step != s.step:
            load_best(self.checkpoint_dir, self.model)  # the output holds the best dev-loss weights

    def _emit(self, kind: StepKind, **fields) -> None:
        report = StepReport(kind=kind, step=self.state.step, total_steps=self.n_steps, state=self.state,
                            model=self.model, **fields)
        for hook in self.hooks:
            hook(report)
