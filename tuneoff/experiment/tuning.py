"""Fine-tune arms tuned on dev: successive halving over candidate configurations, each trial
selected by the dev main metric at its epoch ends (one run per trial, best epoch kept).

Every candidate (the product of the options an arm lists, plus learning-rate multiples when it lists
none) trains one epoch; the better half by dev metric resumes from its checkpoint for the next rung,
and so on to `max_epochs`. The dev metric is the task's main metric, scored by the same evaluation
engine as the test split, on the in-training model. A finished search is stored (kind `tuning`)
and reused by a rerun of the experiment; the losing trials' checkpoints are removed.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config.experiment import ArmEntry, build_finetune_arm, build_prompt_arm
from ..config.tuning import FinetuneTuning, grid
from ..data import digest
from ..finetune.outputs import is_finished
from ..metrics import get_metric
from ..records import Role, RunKind, TrainStats, TuningSummary, read_model_meta
from .context import RunContext


@dataclass
class Trial:
    options: dict
    """The arm's finetune options for this candidate (lists resolved)."""
    out: Path
    run_id: int | None = None
    stats: TrainStats | None = None
    seconds: float = 0.0

    @property
    def best(self) -> float:
        return self.stats.best_dev_metric if self.stats and self.stats.best_dev_metric is not None else -math.inf

    def record(self) -> dict:
        s = self.stats
        return {"options": self.options, "epochs": s.epochs if s else 0, "dev_metrics": s.dev_metrics if s else [],
                "best": None if self.best == -math.inf else self.best, "seconds": round(self.seconds, 2),
                "finished": is_finished(self.out), "dir": str(self.out)}


def candidates(entry: ArmEntry, spec: FinetuneTuning) -> list[dict]:
    """The arm's candidate options: its listed values; with none listed for the learning rate,
    the method's (or the arm's) rate and the spec's multiples of it."""
    from ..finetune.spec import DEFAULT_LR

    combos = grid(entry.finetune)
    if "learning_rate" in (entry.finetune or {}) and isinstance(entry.finetune["learning_rate"], list):
        return combos
    out = []
    for combo in combos:
        base = combo.get("learning_rate") or DEFAULT_LR[combo.get("method", "lora")]
        for factor in sorted({1.0, *spec.learning_rates}):
            out.append({**combo, "learning_rate": float(f"{base * factor:.3g}")})
    return out


def rungs(n: int, max_epochs: int, halving: bool) -> list[int]:
    """Epoch counts at which candidates are compared: 1, 2, 4, ... up to max_epochs (one rung, all
    epochs, without halving or with a single candidate)."""
    if not halving or n == 1:
        return [max_epochs]
    points, e = [], 1
    while e < max_epochs:
        points.append(e)
        e *= 2
    return points + [max_epochs]


def tune_finetune(ctx: RunContext, entry: ArmEntry) -> tuple[Path, dict]:
    """Search the arm's candidates on dev; returns (chosen model directory, chosen options)."""
    spec = ctx.exp.tuning.finetune
    options = candidates(entry, spec)
    key = _fingerprint(ctx, entry, options, spec)
    previous = ctx.store.find_run(key, statuses=("done",))
    if previous is not None:
        summary = TuningSummary.from_json(previous["summary_json"])
        if is_finished(Path(summary.chosen_dir)):
            ctx.say(f"[dim]{entry.name}: reusing the tuned model in {summary.chosen_dir}[/dim]")
            _link_chosen(ctx, entry, previous["id"], Path(summary.chosen_dir))
            return Path(summary.chosen_dir), summary.chosen
    began = time.perf_counter()
    run_id = ctx.store.start_run(RunKind.TUNING, arm=entry.name, task=ctx.exp.task.name, split="dev",
                                 model=entry.model or ctx.exp.model, spec={"candidates": options,
                                                                          "tuning": spec.__dict__},
                                 fingerprint=key, experiment_id=ctx.experiment_id)
    trials = [Trial(o, _trial_dir(ctx, entry, o, spec)) for o in options]
    alive = trials
    for rung in rungs(len(trials), spec.max_epochs, spec.halving):
        for trial in alive:
            _train_trial(ctx, entry, trial, spec, pause_at=rung if rung < spec.max_epochs else None)
        if rung < spec.max_epochs:
            alive = sorted(alive, key=lambda t: t.best, reverse=True)[:math.ceil(len(alive) / 2)]
    chosen = max((t for t in alive if is_finished(t.out)), key=lambda t: t.best)
    for trial in trials:
        if trial is not chosen and not is_finished(trial.out):
            shutil.rmtree(trial.out, ignore_errors=True)  # a dropped trial's checkpoints: nothing resumes them
    # curve points and repeats retrain without a dev search: the chosen options, for the epochs that scored best
    best_epoch = next(e for e, _, v in chosen.stats.dev_metrics if v == chosen.best)
    chosen_options = {**chosen.options, "epochs": int(best_epoch)}
    dev_metric = get_metric(ctx.exp.task.metric).key(chosen.best)  # back from the scorer's orientation
    summary = TuningSummary([t.record() for t in trials], chosen_options, str(chosen.out), dev_metric,
                            time.perf_counter() - began, sum(t.stats.epochs for t in trials if t.stats))
    ctx.store.finish_run(run_id, "done", summary.to_dict())
    ctx.say(f"{entry.name}: tuned on {len(ctx.data.dev)} dev items, {len(trials)} candidates, "
            f"{summary.epochs_trained:g} epochs in {summary.seconds / 60:.1f} min; chosen "
            f"{summary.chosen_text()} (dev {dev_metric:.3f})")
    _link_chosen(ctx, entry, run_id, chosen.out, chosen.run_id)
    return chosen.out, summary.chosen


def _link_chosen(ctx, entry: ArmEntry, tuning_run: int, out: Path, train_run: int | None = None) -> None:
    if train_run is None:
        train_run = read_model_meta(out)["run_id"]
    ctx.link(tuning_run, Role.TUNING, entry.name)
    ctx.link(train_run, Role.FINETUNE, entry.name)


def _train_trial(ctx, entry: ArmEntry, trial: Trial, spec: FinetuneTuning, pause_at: int | None) -> None:
    from ..finetune import run_finetune
    from ..finetune.checkpoint import complete_checkpoints
    from ..finetune.run import Selection

    if is_finished(trial.out):
        meta = read_model_meta(trial.out)
        trial.run_id, trial.stats = meta["run_id"], TrainStats.from_dict(meta["stats"])
        return
    arm = build_finetune_arm(entry, overrides={**trial.options, "epochs": spec.max_epochs})
    formatter, chat = training_format(ctx, entry)
    scorer = DevScorer(ctx, build_prompt_arm(entry, ctx.exp.task), entry.model or ctx.exp.model, trial.out.name,
                       arm.bf16("cpu"), chat)
    began = time.perf_counter()
    with ctx.phase(f"{entry.name}: tune"):
        result = run_finetune(ctx.data, arm, entry.model or ctx.exp.model, trial.out, ctx.store,
                              resume=bool(complete_checkpoints(trial.out / "checkpoints")), console=ctx.console,
                              formatter=formatter,
                              selection=Selection(scorer, spec.patience, pause_at))
    trial.seconds += time.perf_counter() - began
    trial.run_id, trial.stats = result.run_id, result.stats


@dataclass
class DevScorer:
    """The dev main metric of an in-training model, through the evaluation engine (calls stored
    under the trial's directory name and step, so no two weights share a cache key)."""

    ctx: object
    arm: object
    base: str
    name: str
    bf16: bool
    chat: bool = True
    """A chat model (its template renders prompts) or a base model (completion text)."""
    tokenizer: object = field(default=None, repr=False)

    def __call__(self, model, epoch: int, step: int) -> float:
        from ..evaluate import evaluate
        from ..models import BackendInfo, load_tokenizer
        from ..models.local import TransformersBackend
        from ..prompting import TaskContext

        self.tokenizer = self.tokenizer or load_tokenizer(self.base)
        info = BackendInfo(name=f"tune:{self.name}@step{step}", dtype="bfloat16-autocast" if self.bf16 else "float32",
                           chat=self.chat)
        backend = TransformersBackend(model, self.tokenizer, info, batch_size=self.ctx.exp.batch_size)
        result = evaluate(backend, self.arm, self.ctx.data.dev, TaskContext.of(self.ctx.data), store=self.ctx.store,
                          split="dev", kind=RunKind.TUNE)
        # the loop keeps the highest dev score: a lower-is-better metric is handed over negated
        return get_metric(result.main.name).key(float(result.main.value or 0.0))


def training_format(ctx, entry: ArmEntry):
    """(formatter, chat model?): a fine-tune trains on exactly the prompt format its arm is evaluated
    with (chat messages, or completion text on a base model)."""
    from ..models.weights import is_chat_model
    from ..prompting import TaskContext, prepare

    chat = is_chat_model(entry.model or ctx.exp.model)
    prompter = prepare(build_prompt_arm(entry, ctx.exp.task), TaskContext.of(ctx.data), chat_model=chat)
    return (lambda ex: prompter.messages(ex, [])), chat


def _trial_dir(ctx, entry: ArmEntry, options: dict, spec: FinetuneTuning) -> Path:
    key = json.dumps({"options": options, "epochs": spec.max_epochs, "patience": spec.patience,
                      "base": _fingerprint(ctx, entry, [], spec)}, sort_keys=True, default=str)
    return ctx.exp.output_dir() / "models" / f"{entry.name}-tune-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def _fingerprint(ctx, entry: ArmEntry, options: list[dict], spec: FinetuneTuning) -> str:
    """Same candidates, data, model and prompt format: the same search (a rerun reuses it)."""
    prompt = build_prompt_arm(entry, ctx.exp.task)
    blob = json.dumps({"candidates": options, "spec": spec.__dict__, "model": entry.model or ctx.exp.model,
                       "prompt": prompt.to_dict(), "instruction": ctx.exp.task.instruction,
                       "labels": list(ctx.data.labels or ()), "train": digest(ctx.data.train),
                       "dev": digest(ctx.data.dev)}, sort_keys=True, default=str)
    return "tuning-" + hashlib.sha256(blob.encode()).hexdigest()[:32]
