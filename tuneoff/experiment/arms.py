"""One arm's work in an experiment: its model trained (or tuned on dev), its evaluation on the test
split, its serving probe, its out-of-domain score and its repeats, each run linked to the experiment
under its `Role`. `plan.py` decides which of these run when; `run.py` does a unit's share of them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..config.experiment import ArmEntry, ArmKind, build_finetune_arm, build_prompt_arm
from ..config.specs import to_dict
from ..config.task import TaskData
from ..data import digest
from ..errors import TuneoffError
from ..finetune.spec import RUNTIME_OPTIONS
from ..locks import hold
from ..records import Role, RunKind, read_model_meta
from ..store import Store
from .context import RunContext


def prepare_arm(ctx: RunContext, entry: ArmEntry) -> None:
    """A fine-tune arm's model: trained, or tuned on dev (a prompt arm needs nothing here)."""
    if entry.kind is not ArmKind.FINETUNE or ctx.model_of(entry.name) is not None:
        return  # a prompt arm, or a teacher trained already for its student
    if ctx.exp.tuned(entry) and not entry.teacher:
        from .tuning import tune_finetune

        state = ctx.state(entry.name)
        out, state.chosen = tune_finetune(ctx, entry)
        state.model = str(out)
    else:
        ctx.state(entry.name).model = str(train_arm(ctx, entry))


def score_arm(ctx: RunContext, entry: ArmEntry) -> None:
    """The arm on the test split, then its serving probe, out-of-domain score and repeats."""
    run_id = evaluate_arm(ctx, entry)
    probe_arm(ctx, entry, run_id)
    ood_arm(ctx, entry, run_id)
    run_repeats(ctx, entry)


def output_dir(ctx: RunContext, entry: ArmEntry, arm, data: TaskData | None = None) -> Path:
    """One directory per (arm spec, base model, training data, prompt format): a change to any of them
    never reuses a stale model, and a change to anything else (test size, other arms) reuses it."""
    prompt, data = build_prompt_arm(entry, ctx.exp.task), data or ctx.data
    spec = {k: v for k, v in to_dict(arm).items() if k not in RUNTIME_OPTIONS}  # the same model on any device
    key = json.dumps({"arm": spec, "model": entry.model or ctx.exp.model, "prompt": prompt.to_dict(),
                      "instruction": ctx.exp.task.instruction, "labels": list(ctx.data.labels or ()),
                      "train": digest(data.train), "dev": digest(data.dev)},
                     sort_keys=True, default=str)
    return ctx.exp.output_dir() / "models" / f"{arm.name}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def train_arm(ctx: RunContext, entry: ArmEntry, overrides: dict | None = None, role: Role = Role.FINETUNE,
              x: int | None = None) -> Path:
    """Train (or reuse a finished model of the same spec) and link the training run."""
    from ..finetune import run_finetune
    from ..finetune.outputs import is_finished
    from .tuning import training_format

    arm = build_finetune_arm(entry, overrides={**ctx.chosen(entry.name), **(overrides or {})})
    data = distilled_data(ctx, entry, arm) if arm.teacher else ctx.data
    out = output_dir(ctx, entry, arm, data)
    # a parallel job may be training this very folder (a curve point that is also the arm's model):
    # wait for it and reuse its model, rather than be refused by the training lock
    with hold(out.parent / f".{out.name}.claim", f"training {out.name}", wait=True, waiting=ctx.say):
        if is_finished(out):
            run_id = _training_run(ctx.store, out, entry.name)
            ctx.say(f"[dim]{arm.name}: reusing the trained model in {out}[/dim]")
        else:
            model = entry.model or ctx.exp.model
            with ctx.phase(f"{arm.name}: train"):
                result = run_finetune(data, arm, model, out, ctx.store,
                                      resume=_has_checkpoints(out), console=ctx.console,
                                      formatter=training_format(ctx, entry)[0])
            run_id = result.run_id
    ctx.link(run_id, role, entry.name, x)
    return out


def _training_run(store: Store, out: Path, arm: str) -> int:
    """This store's run for a finished model folder. The folder names the run that trained it, but
    maybe in another store (`--store A`, then `--store B`), where that id is missing or another run:
    then the training is recorded here as a run of its own, from the folder's stats."""
    meta = read_model_meta(out)
    fp = meta.get("fingerprint", "")
    try:
        row = store.run(int(meta["run_id"]))
    except TuneoffError:
        row = None
    if row is not None and RunKind(row["kind"]) is RunKind.FINETUNE and row["arm"] == arm and \
            (not fp or row["fingerprint"] == fp):
        return int(row["id"])
    found = store.find_run(fp, statuses=("done",)) if fp else None
    if found is not None:
        return int(found["id"])
    run_id = store.start_run(RunKind.FINETUNE, arm=arm, task=meta.get("task", ""), split="train", model=meta.get("base", ""),
                             spec=meta.get("arm", {}), fingerprint=fp)
    store.finish_run(run_id, "done", {**meta.get("stats", {}), "output_dir": str(out), "trained_in_another_store": True})
    return run_id


def distilled_data(ctx: RunContext, entry: ArmEntry, arm) -> TaskData:
    """The task with a training split whose targets are the teacher arm's answers to the first
    `n_unlabelled` training inputs; the teacher's run is linked to the student (Role.DISTILL)."""
    import dataclasses

    from ..evaluate.distill import teacher_answers

    teacher = ctx.exp.arm(arm.teacher)
    if teacher.kind is ArmKind.FINETUNE and ctx.model_of(teacher.name) is None:
        ctx.state(teacher.name).model = str(train_arm(ctx, teacher))
    items = ctx.data.train[:arm.n_unlabelled] if arm.n_unlabelled else ctx.data.train
    # the teacher as declared (an `optimise` teacher is not re-optimised for this)
    with ctx.phase(f"{entry.name}: teacher {teacher.name}"):
        run_id, answered = teacher_answers(ctx.backend(ctx.weights_of(teacher)), build_prompt_arm(teacher, ctx.exp.task),
                                           items, ctx.data, ctx.store, ctx.experiment_id, ctx.console)
    ctx.link(run_id, Role.DISTILL, entry.name)
    ctx.say(f"{entry.name}: {teacher.name} answered {len(items)} training inputs, {len(answered)} usable as targets")
    return dataclasses.replace(ctx.data, train=answered)


def _has_checkpoints(out: Path) -> bool:
    from ..finetune.checkpoint import complete_checkpoints

    return bool(complete_checkpoints(out / "checkpoints"))


def evaluate_arm(ctx: RunContext, entry: ArmEntry, model: str | None = None, overrides: dict | None = None,
                 role: Role = Role.ARM, x: int | None = None, split: str = "test") -> int:
    """Score one arm on a split (optimising it on dev first if it asks to); returns the run id."""
    from ..evaluate.runner import optimise_then_evaluate

    arm = build_prompt_arm(entry, ctx.exp.task, overrides=overrides, tuning=ctx.exp.tuning)
    result, optimised = optimise_then_evaluate(
        ctx.backend(model or ctx.weights_of(entry)), arm, ctx.data, split, store=ctx.store, console=ctx.console,
        experiment_id=ctx.experiment_id, step=lambda what: ctx.phase(f"{arm.name}: {what}"))
    if optimised is not None:
        ctx.record_search(entry.name, optimised, x)
    ctx.link(result.run_id, role, entry.name, x)
    main = result.main
    ctx.say(f"{entry.name}{'' if x is None else f' @ {x}'}: {main.name} {main.value:.3f} "
            f"[{main.ci_low:.3f}, {main.ci_high:.3f}] ({result.cache_hits} cached, {result.cache_misses} new calls, "
            f"{result.wall_seconds:.1f} s)")
    return result.run_id


def run_repeats(ctx: RunContext, entry: ArmEntry) -> None:
    """Repeats 1..N-1 of an arm with new seeds: a fine-tune arm retrains (its chosen options, if
    tuned) with seed + r; a prompt arm redraws demos and samples with seed + r. A deterministic prompt
    (scored labels or greedy answers, first or similar demos: `ArmEntry.repeat_draws` empty) is not
    repeated: a repeat would replay its answers, and the report says "deterministic (1 run)"."""
    if not entry.repeat_draws():
        return
    for r in range(1, ctx.exp.repeats_of(entry)):
        if entry.kind is ArmKind.FINETUNE:
            chosen = ctx.chosen(entry.name)  # a tuned arm's options, else its own
            seed = int(chosen.get("seed", 0) if chosen else entry.options.seed) + r
            out = train_arm(ctx, entry, overrides={"seed": seed}, role=Role.REPEAT_TRAIN, x=r)
            evaluate_arm(ctx, entry, model=str(out), role=Role.REPEAT, x=r)
        else:
            seed = entry.options.seed + r
            chosen = ctx.chosen_prompt(entry.name) or {}
            evaluate_arm(ctx, entry, overrides={**chosen, "seed": seed}, role=Role.REPEAT, x=r)


def evaluated_arm(ctx: RunContext, run_id: int):
    """The PromptArm an evaluation run scored, as stored (an optimised arm: the optimiser's choice)."""
    from ..config.specs import from_dict
    from ..prompting.arm import PromptArm

    return from_dict(PromptArm, json.loads(ctx.store.run(run_id)["spec_json"]), "arm")


def probe_arm(ctx: RunContext, entry: ArmEntry, run_id: int) -> None:
    """Time the arm as a server answers it (`tuneoff.evaluate.probe`), on its evaluation's weights and
    prompting: the latency and per-request cost the table shows come from here."""
    from ..evaluate.probe import probe
    from ..prompting import TaskContext

    spec = ctx.exp.probe
    if not spec.items:
        return
    with ctx.phase(f"{entry.name}: serving probe"):
        probe_id, s, reused = probe(ctx.backend(ctx.weights_of(entry)), evaluated_arm(ctx, run_id),
                                    ctx.data.test[:spec.items], TaskContext.of(ctx.data),
                                    concurrency=spec.concurrency, store=ctx.store, experiment_id=ctx.experiment_id)
    ctx.link(probe_id, Role.PROBE, entry.name)
    ctx.say(f"{entry.name} serving probe{' (stored)' if reused else ''}: {s.items} single requests p50 "
            f"{s.single_p50:.3f} s, p95 {s.single_p95:.3f} s; {s.throughput:.1f} requests/s at {s.concurrency} "
            f"concurrent ({s.seconds_per_request:.3f} s machine time each)")


def ood_arm(ctx: RunContext, entry: ArmEntry, run_id: int) -> None:
    """Score the arm, with its own prompting and weights, on the out-of-domain test set (demos still
    come from the main task's training data: the arm as it was built)."""
    import dataclasses

    from ..evaluate import evaluate
    from ..prompting import TaskContext

    if ctx.ood is None:
        return
    task = dataclasses.replace(TaskContext.of(ctx.data), name=ctx.ood.spec.name)
    with ctx.phase(f"{entry.name}: out of domain"):
        result = evaluate(ctx.backend(ctx.weights_of(entry)), evaluated_arm(ctx, run_id), ctx.ood.test, task,
                          store=ctx.store, split="ood", console=ctx.console, experiment_id=ctx.experiment_id)
    ctx.link(result.run_id, Role.OOD, entry.name)
    main = result.main
    ctx.say(f"{entry.name} out of domain ({ctx.ood.spec.name}): {main.name} {main.value:.3f} "
            f"[{main.ci_low:.3f}, {main.ci_high:.3f}] ({result.cache_hits} cached, {result.cache_misses} new calls)")


