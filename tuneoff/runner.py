"""`tuneoff run`: every arm of an experiment on the same splits, then the comparison.

Order: fine-tune arms train first (prompt arms may run on their models), then each arm is scored
on the test split by the one evaluation engine, then the learning curves, consistency probes and
the flexibility check. Every run is linked to the experiment in the store; the comparison is then
rebuilt from the store alone (`tuneoff.summaries`), so `tuneoff report` can redo it later.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .data import digest
from .experiment import ArmEntry, Experiment, build_finetune_arm, build_prompt_arm
from .models import ModelSpec, load_backend
from .specs import to_dict
from .store import Store
from .task import TaskData, load_task


@dataclass
class RunContext:
    """What one `tuneoff run` holds while it works: loaded models, phases timed so far."""

    exp: Experiment
    store: Store
    experiment_id: int
    data: TaskData
    console: object = None
    backends: dict = field(default_factory=dict)
    """model spec -> loaded backend (each model is loaded once per run)."""
    tuned: dict = field(default_factory=dict)
    """fine-tune arm name -> trained model directory."""
    phases: dict = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str):
        began = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - began

    def backend(self, spec: str):
        if spec not in self.backends:
            with self.phase(f"load {Path(spec).name if '/' in spec else spec}"):
                # a fine-tune is a transformers directory: only the base model can be a GGUF
                engine = self.exp.engine if spec == self.exp.model else "transformers"
                self.backends[spec] = load_backend(ModelSpec(spec, dtype=self.exp.dtype, engine=engine,
                                                             batch_size=self.exp.batch_size))
        return self.backends[spec]

    def say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text)


def run_experiment(exp: Experiment, store: Store, console=None) -> int:
    """Run everything the experiment asks for; returns its experiment id in the store."""
    began = time.perf_counter()
    experiment_id = store.add_experiment(exp.name, to_dict(exp))
    ctx = RunContext(exp, store, experiment_id, load_task(exp.task), console)
    ctx.say(f"experiment {experiment_id}: {exp.name} — train {len(ctx.data.train)}, dev {len(ctx.data.dev)}, "
            f"test {len(ctx.data.test)} items; store {store.path}")
    for entry in sorted(exp.arms, key=lambda a: a.kind != "finetune"):  # models before their users
        if entry.kind == "finetune":
            ctx.tuned[entry.name] = train_arm(ctx, entry)
        evaluate_arm(ctx, entry)
    if exp.curves:
        run_curves(ctx)
    if exp.consistency:
        run_consistency(ctx)
    if exp.flexibility:
        run_flexibility(ctx)
    ctx.phases["total"] = time.perf_counter() - began
    sizes = {"train": len(ctx.data.train), "dev": len(ctx.data.dev), "test": len(ctx.data.test)}
    store.finish_experiment(experiment_id, {"phases": ctx.phases, "sizes": sizes})
    return experiment_id


def model_of(ctx: RunContext, entry: ArmEntry) -> str:
    if entry.finetuned:
        return str(ctx.tuned[entry.finetuned])
    return entry.model or ctx.exp.model


def output_dir(ctx: RunContext, entry: ArmEntry, arm) -> Path:
    """One directory per (arm spec, base model, training data, prompt format): a change to any of them
    never reuses a stale model, and a change to anything else (test size, other arms) reuses it."""
    prompt = build_prompt_arm(entry, ctx.exp)
    key = json.dumps({"arm": to_dict(arm), "model": entry.model or ctx.exp.model, "prompt": prompt.to_dict(),
                      "instruction": ctx.exp.task.instruction, "labels": list(ctx.data.labels or ()),
                      "train": digest(ctx.data.train), "dev": digest(ctx.data.dev)},
                     sort_keys=True, default=str)
    return ctx.exp.output_dir() / "models" / f"{arm.name}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def train_arm(ctx: RunContext, entry: ArmEntry, overrides: dict | None = None, role: str = "finetune",
              x: int | None = None) -> Path:
    """Train (or reuse a finished model of the same spec) and link the training run."""
    from .finetune import run_finetune
    from .finetune.outputs import is_finished
    from .prompting import TaskContext, prepare

    arm = build_finetune_arm(entry, overrides=overrides)
    out = output_dir(ctx, entry, arm)
    if is_finished(out):
        run_id = json.loads((out / "tuneoff.json").read_text())["run_id"]
        ctx.say(f"[dim]{arm.name}: reusing the trained model in {out}[/dim]")
    else:
        # train on exactly the prompt format the arm is evaluated with
        prompter = prepare(build_prompt_arm(entry, ctx.exp), TaskContext.of(ctx.data))
        with ctx.phase(f"{arm.name}: train"):
            result = run_finetune(ctx.data, arm, entry.model or ctx.exp.model, out, ctx.store,
                                  resume=_has_checkpoints(out), console=ctx.console,
                                  formatter=lambda ex: prompter.messages(ex, []))
        run_id = result.run_id
    ctx.store.link_run(ctx.experiment_id, run_id, role, entry.name, x)
    return out


def _has_checkpoints(out: Path) -> bool:
    from .finetune.checkpoint import complete_checkpoints

    return bool(complete_checkpoints(out / "checkpoints"))


def evaluate_arm(ctx: RunContext, entry: ArmEntry, model: str | None = None, overrides: dict | None = None,
                 role: str = "arm", x: int | None = None, split: str = "test") -> int:
    """Score one arm on a split (optimising it on dev first if it asks to); returns the run id."""
    from .evaluate import evaluate
    from .prompting import TaskContext, optimise

    arm = build_prompt_arm(entry, ctx.exp, overrides=overrides)
    backend = ctx.backend(model or (str(ctx.tuned[entry.name]) if entry.kind == "finetune" else model_of(ctx, entry)))
    task = TaskContext.of(ctx.data)
    if arm.optimise is not None:
        with ctx.phase(f"{arm.name}: optimise"):
            found = optimise(backend, arm, ctx.data.train, ctx.data.dev, task, store=ctx.store)
        ctx.store.link_run(ctx.experiment_id, found.run_id, "optimise", entry.name, x)
        arm = found.arm
    with ctx.phase(f"{arm.name}: evaluate"):
        result = evaluate(backend, arm, ctx.data.split(split), task, store=ctx.store, split=split,
                          console=ctx.console, experiment_id=ctx.experiment_id)
    ctx.store.link_run(ctx.experiment_id, result.run_id, role, entry.name, x)
    main = result.main
    ctx.say(f"{entry.name}{'' if x is None else f' @ {x}'}: {main.name} {main.value:.3f} "
            f"[{main.ci_low:.3f}, {main.ci_high:.3f}] ({result.cache_hits} cached, {result.cache_misses} new calls, "
            f"{result.wall_seconds:.1f} s)")
    return result.run_id


def run_curves(ctx: RunContext) -> None:
    """Metric vs k demos (a prompt arm) and vs n training examples (a fine-tune arm)."""
    spec, exp = ctx.exp.curves, ctx.exp
    prompt = exp.arm(spec.prompt_arm) if spec.prompt_arm else next(
        (a for a in exp.arms if a.kind == "prompt" and (a.prompt or {}).get("shots", 0) > 0), None)
    for k in spec.shots if prompt else []:
        evaluate_arm(ctx, prompt, overrides={"shots": k}, role="curve", x=k)
    tune = exp.arm(spec.finetune_arm) if spec.finetune_arm else next((a for a in exp.arms if a.kind == "finetune"), None)
    for n in spec.n_train if tune else []:
        out = train_arm(ctx, tune, overrides={"n_train": n}, role="curve_train", x=n)
        evaluate_arm(ctx, tune, model=str(out), role="curve", x=n)


def run_consistency(ctx: RunContext) -> None:
    from .consistency import consistency
    from .prompting import TaskContext

    spec = ctx.exp.consistency
    for name in spec.arms:
        entry = ctx.exp.arm(name)
        arm = build_prompt_arm(entry, ctx.exp, overrides={"temperature": spec.temperature} if spec.seeds else None)
        if spec.seeds and arm.mode == "score":
            arm = arm.replace(mode="generate")  # seeds only matter when the model samples
        items = ctx.data.test[:spec.n_items] if spec.n_items else ctx.data.test
        model = str(ctx.tuned[name]) if entry.kind == "finetune" else model_of(ctx, entry)
        with ctx.phase(f"{name}: consistency"):
            result = consistency(ctx.backend(model), arm, items, TaskContext.of(ctx.data),
                                 paraphrases=spec.paraphrases, seeds=spec.seeds or [arm.seed], store=ctx.store)
        ctx.store.link_run(ctx.experiment_id, result.run_id, "consistency", name)
        ctx.say(f"{name}: agreement {result.agreement:.1%} across {len(result.variants)} variants, "
                f"{result.metric} {result.mean:.3f} ± {result.std:.3f}")


def run_flexibility(ctx: RunContext) -> None:
    """Score each fine-tuned model and the base model on a second task with the same prompt arm."""
    from .evaluate import evaluate
    from .experiment import ArmEntry
    from .prompting import TaskContext

    flex = ctx.exp.flexibility
    data = load_task(flex.task)
    task = TaskContext.of(data)
    entry = ArmEntry(name=f"flex-{flex.task.name}", prompt=flex.prompt)
    arm = build_prompt_arm(entry, ctx.exp.__class__(name="flex", task=flex.task, arms=[entry]))
    models = {"flexibility_base": [("base", ctx.exp.model)]}
    models["flexibility"] = [(name, str(path)) for name, path in ctx.tuned.items()]
    for role, pairs in models.items():
        for name, model in pairs:
            with ctx.phase(f"{name}: flexibility"):
                result = evaluate(ctx.backend(model), arm, data.test, task, store=ctx.store, split="test",
                                  console=ctx.console, experiment_id=ctx.experiment_id)
            ctx.store.link_run(ctx.experiment_id, result.run_id, role, name)
            ctx.say(f"{name} on {flex.task.name}: {result.main.name} {result.main.value:.3f}")
