"""`run_finetune`: the typed function behind `tuneoff finetune`.

Load the base model, pick what trains (the method), encode the task's examples, run the one
loop, write the model directory and the training record. Resumable: rerun with `resume=True`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch

from ..data import Example, subsample
from ..errors import TuneoffError
from ..locks import hold
from ..store import Store
from .checkpoint import complete_checkpoints
from .collate import EncodeReport, Encoded, Formatter, default_formatter, encode_all, require_examples
from .loop import Hook, Loop, NonFiniteLoss, Scorer, steps_per_epoch
from .methods import count_params, estimate_flops, prepare_model
from .outputs import base_spec, is_finished, write_model
from .parallel import Processes
from .record import ProgressBar, TrainStats, make_stats, peak_memory_mb, store_hook, store_stats
from .spec import RUNTIME_OPTIONS, FinetuneArm
from .speed import compile_decoder, speed_up

if TYPE_CHECKING:  # a loaded task is passed in: training never reads configs itself
    from ..config.task import TaskData

CHECKPOINTS = "checkpoints"


@dataclass
class FinetuneResult:
    """What `run_finetune` returns."""

    output_dir: Path
    """The model directory: an adapter (lora) or a full HF model (full, freeze); a valid model spec."""
    run_id: int
    """The store's run id of this fine-tune (training events, metrics, summary)."""
    stats: TrainStats
    paused: bool = False
    """Stopped at `selection.pause_at_epoch` with a checkpoint: no model is written yet."""


@dataclass
class Selection:
    """How the best weights are chosen: by the dev main metric at epoch ends (tuning), with early
    stopping, and optionally a pause after some epochs (successive halving resumes it later)."""

    scorer: Scorer
    """(model, epoch, step) -> dev main metric (higher is better); see `loop.Scorer`."""
    patience: int | None = None
    """Epoch ends without a better dev metric before training stops."""
    pause_at_epoch: int | None = None


def run_finetune(task: TaskData, arm: FinetuneArm, model: str, output_dir: Path, store: Store | None,
                 resume: bool = False, console=None, formatter: Formatter | None = None,
                 hooks: Sequence[Hook] = (), selection: Selection | None = None,
                 processes: Processes | None = None) -> FinetuneResult:
    """Fine-tune `model` on the task's training split with `arm`, and record the run.

    Args:
        task: The loaded task; its `train` split is trained on, its `dev` split gives the eval loss.
        arm: Method and hyper-parameters.
        model: Base model spec: `embedded:NAME`, or a local HF directory.
        output_dir: Where the fine-tuned model (and, while training, `checkpoints/`) goes.
        store: The run store; training events are written as they happen.
        resume: Continue from the latest complete checkpoint in `output_dir/checkpoints`.
        console: A rich console for the progress bar (None: no bar).
        formatter: Example -> prompt messages; default: task instruction + input as one user turn.
            Pass the prompt arm's message builder to train on the format the model is evaluated with.
        hooks: Extra callables that see every step, eval and checkpoint report.
        selection: Choose the best epoch by a dev metric (and maybe pause); default: the last weights
            (or the best dev loss with eval_steps).
        processes: The data-parallel group this call is one process of (`Processes.from_environment()`
            under `accelerate launch`); every process calls this with the same arguments, and only the
            main one writes (its `store`; the others may pass None). Default: training alone.
    """
    group = processes or Processes()
    output_dir = Path(output_dir).expanduser()
    # two trainings into one directory would interleave checkpoints: the second is refused (the main
    # process of a data-parallel group holds the lock for the group)
    lock = output_dir.parent / f".{output_dir.name}.lock" if group.is_main else None
    with hold(lock, f"training into {output_dir}"):
        return _run_finetune(task, arm, model, output_dir, store, resume, console, formatter, hooks, selection, group)


def _run_finetune(task: TaskData, arm: FinetuneArm, model: str, output_dir: Path, store: Store | None,
                  resume: bool, console, formatter: Formatter | None, hooks: Sequence[Hook],
                  selection: Selection | None, group: Processes) -> FinetuneResult:
    _check_output_dir(output_dir, resume)
    if arm.eval_steps and not task.dev:
        raise TuneoffError("a periodic eval loss needs dev examples, and the task has none", field="eval_steps",
                           hint="give the task a dev file (or a split fraction), or leave eval_steps unset")
    lm, tokenizer, device = _load_base(model, arm, group)
    formatter = formatter or default_formatter(task.spec.instruction)
    limit = arm.max_length or derived_limit(lm)
    train, report = _encode(tokenizer, subsample(task.train, arm.n_train, arm.seed), formatter, arm, limit)
    require_examples(train, report, limit)
    dev = _encode(tokenizer, subsample(task.dev, arm.n_eval, arm.seed), formatter, arm, limit)[0] if arm.eval_steps else []
    fp = fingerprint(task, arm, model, train)
    main = group.is_main
    if main:
        _guard_checkpoints(output_dir / CHECKPOINTS, fp, resume)
    run_id = group.share(_open_run(store, task, arm, model, fp, resume) if main else None)
    loop = Loop(lm, train, dev, arm, output_dir / CHECKPOINTS, _pad_id(tokenizer), device, processes=group)
    if selection is not None:
        loop.scorer, loop.patience, loop.pause_at_epoch = selection.scorer, selection.patience, selection.pause_at_epoch
    resumed_from = loop.state.step if resume and loop.resume() else None
    if resumed_from is not None and main:
        store.delete_training_events(run_id, resumed_from)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with ProgressBar(console if main else None, loop.n_steps, loop.state.step, f"{arm.name} ({arm.method})") as bar:
        loop.hooks = [store_hook(store, run_id), bar, *hooks] if main else list(hooks)
        state = _train(loop, store if main else None, run_id)
    stats = make_stats(report, state, count_params(lm), estimate_flops(lm, state.tokens), peak_memory_mb(device),
                       steps_per_epoch(len(train), arm), resumed_from, group.count, str(device))
    if main:
        _record(store, run_id, lm, tokenizer, output_dir, stats, loop.paused, report,
                {"base": base_spec(model), "method": arm.method, "arm": arm.to_dict(), "task": task.spec.name,
                 "run_id": run_id, "fingerprint": fp, "stats": stats.as_dict()}, arm.keep_checkpoints)
    group.wait()  # the output is whole before any process returns
    return FinetuneResult(output_dir, run_id, stats, paused=loop.paused)


def _record(store: Store, run_id: int, lm, tokenizer, output_dir: Path, stats: TrainStats, paused: bool,
            report: EncodeReport, meta: dict, keep_checkpoints: bool) -> None:
    """The main process's last writes: the model directory (unless paused) and the run's record."""
    if paused:
        store.finish_run(run_id, "paused", {"output_dir": str(output_dir), **stats.as_dict()})
        return
    write_model(lm, tokenizer, output_dir, meta)
    if not keep_checkpoints:
        shutil.rmtree(output_dir / CHECKPOINTS, ignore_errors=True)
    store_stats(store, run_id, stats)
    store.finish_run(run_id, "done", {"output_dir": str(output_dir), **stats.as_dict(),
                                      "encode": _report_dict(report)})


def _check_output_dir(output_dir: Path, resume: bool) -> None:
    if is_finished(output_dir):
        raise TuneoffError(f"{output_dir} already holds a finished fine-tune", field="output_dir",
                           hint="choose a new output directory, or load this one as a model")
    if not resume and complete_checkpoints(output_dir / CHECKPOINTS):
        raise TuneoffError(f"{output_dir} holds checkpoints of an unfinished run", field="output_dir",
                           hint="pass --resume to continue it, or remove the directory to start over")


def _load_base(model: str, arm: FinetuneArm, group: Processes):
    from ..models import ModelSpec, adapter_base, load_model, resolve_dir

    if arm.method == "lora" and adapter_base(resolve_dir(model)):
        raise TuneoffError(f"'{model}' is itself an adapter", field="model",
                           hint="merge it first (`tuneoff merge`), then train a new adapter on the merged model")
    # fp32 master weights whatever arm.dtype says: bf16 is an autocast choice, not a storage one; each
    # process of a group loads onto the device accelerate gave it
    spec = ModelSpec(model, dtype="float32", device=group.device() or arm.device,
                     attn_implementation=arm.attn_implementation)
    lm, tokenizer, info = load_model(spec)
    device = torch.device(info.device)
    if device.type == "cuda" and arm.dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        raise TuneoffError(f"{torch.cuda.get_device_name(device)} has no bfloat16", field="dtype",
                           hint="use dtype: auto (bf16 where the GPU has it, else float32) or float32")
    torch.manual_seed(arm.seed)
    lm = prepare_model(lm, arm)
    speed_up(lm, arm)
    if arm.compile:
        compile_decoder(lm)
    return lm, tokenizer, device


def _pad_id(tokenizer) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pad or 0)  # padded positions are masked out of attention and loss: any id works


MAX_DERIVED_LENGTH = 2048
"""The most tokens per example a max_length taken from the data comes to (CPU memory and time grow with it)."""


def derived_limit(lm) -> int:
    """max_length when the arm leaves it to the data: examples are encoded up to the model's context (at
    most MAX_DERIVED_LENGTH), so the batches are as long as the longest example that fits."""
    context = getattr(lm.config, "max_position_embeddings", None) or MAX_DERIVED_LENGTH
    return min(int(context), MAX_DERIVED_LENGTH)


def _encode(tokenizer, examples: list[Example], formatter: Formatter, arm: FinetuneArm, max_length: int
            ) -> tuple[list[Encoded], EncodeReport]:
    return encode_all(tokenizer, examples, formatter, max_length, arm.truncation, arm.completion_only)


def fingerprint(task: TaskData, arm: FinetuneArm, model: str, train: list[Encoded]) -> str:
    """Everything that defines the trained weights: same fingerprint, same run to resume."""
    skip = ("name", "save_total_limit", "keep_checkpoints", *RUNTIME_OPTIONS)
    spec = {k: v for k, v in arm.to_dict().items() if k not in skip}
    tokens = hashlib.sha256(json.dumps([e.input_ids for e in train]).encode()).hexdigest()
    blob = json.dumps({"arm": spec, "model": model, "task": task.spec.name, "tokens": tokens}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _guard_checkpoints(directory: Path, fp: str, resume: bool) -> None:
    """Checkpoints resume only the run that wrote them: same arm, model and training tokens."""
    mark = directory / "fingerprint"
    if resume and mark.exists() and mark.read_text().strip() != fp:
        raise TuneoffError(f"the checkpoints in {directory} were written by a different arm, model or data",
                           field="output_dir", hint="resume with the same settings, or use a new output directory")
    directory.mkdir(parents=True, exist_ok=True)
    mark.write_text(fp + "\n")


def _open_run(store: Store, task: TaskData, arm: FinetuneArm, model: str, fp: str, resume: bool) -> int:
    previous = store.find_run(fp, statuses=("running", "failed", "paused")) if resume else None
    if previous is not None:
        store.reopen_run(int(previous["id"]))
        return int(previous["id"])
    return store.start_run("finetune", arm=arm.name, task=task.spec.name, split="train", model=model,
                           spec=arm.to_dict(), fingerprint=fp)


def _train(loop: Loop, store: Store | None, run_id: int):
    """Run the loop; a failure marks the run failed (checkpoints stay for --resume) and re-raises.
    `store` None: a process of a group other than the main one, which records nothing."""
    if store is None:
        return loop.run()
    try:
        return loop.run()
    except NonFiniteLoss as exc:
        store.add_training_event(run_id, loop.state.step + 1, "error", payload={"message": exc.message})
        store.finish_run(run_id, "failed", {"error": exc.message, "last_checkpoint": str(loop.last_checkpoint)})
        raise
    except BaseException as exc:  # interrupted (Ctrl-C) or crashed: resumable from the last checkpoint
        store.finish_run(run_id, "failed", {"error": f"{type(exc).__name__}: {exc}",
                                            "last_checkpoint": str(loop.last_checkpoint)})
        raise


def _report_dict(report: EncodeReport) -> dict:
    return {"kept": report.kept, "prompt_truncated": report.prompt_truncated,
            "completion_truncated": report.completion_truncated,
            "dropped_no_completion": report.dropped_no_completion, "dropped_ids": report.dropped_ids[:50]}
