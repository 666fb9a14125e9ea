"""`tuneoff run`: every arm of an experiment on the same splits, then the comparison.

Order: fine-tune arms train first (prompt arms may run on their models), then each arm is scored
on the test split by the one evaluation engine, timed as a server by the serving probe and scored
on the out-of-domain set if there is one, then the learning curves, consistency probes and the
flexibility check. Every run is linked to the experiment in the store; the comparison is then
rebuilt from the store alone (`tuneoff.compare.rebuild`), so `tuneoff report` can redo it later.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .config.experiment import ArmEntry, ConsistencySpec, Experiment, build_finetune_arm, build_prompt_arm
from .config.specs import to_dict
from .config.task import TaskData, load_task
from .data import digest
from .finetune.spec import RUNTIME_OPTIONS
from .models import ModelSpec, load_backend
from .records import ExperimentSummary, Role
from .errors import TuneoffError
from .locks import hold
from .store import Store


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
    tuned: dict[str, Path] = field(default_factory=dict)
    """fine-tune arm name -> trained model directory."""
    chosen: dict[str, dict] = field(default_factory=dict)
    """fine-tune arm name -> the options tuning chose (curve points train with them)."""
    chosen_prompt: dict[str, dict] = field(default_factory=dict)
    """tuned prompt arm name -> the instruction and calibration its search chose (curve points use them)."""
    phases: dict = field(default_factory=dict)
    ood: TaskData | None = None
    """The out-of-domain test set (`exp.ood`), loaded and validated before any model call."""

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
                                                             device=self.exp.device, batch_size=self.exp.batch_size))
        return self.backends[spec]

    def say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text)

    def weights_of(self, entry: ArmEntry) -> str:
        """The model that serves an arm: its own training output (fine-tune arm), the fine-tune it
        names (combined arm), else its own or the experiment's model."""
        if entry.kind == "finetune":
            return str(self.tuned[entry.name])
        if entry.finetuned:
            return str(self.tuned[entry.finetuned])
        return entry.model or self.exp.model

    def link(self, run_id: int, role: Role, arm: str, x: int | None = None) -> None:
        self.store.link_run(self.experiment_id, run_id, role.value, arm, x)

    def record_search(self, arm: str, optimised, x: int | None = None) -> None:
        """What a prompt arm's dev search leaves behind: its link, the chosen prompt (a later job or
        repeat reuses it) and one line on the terminal. Called by the plain and the adaptive path."""
        chosen = optimised.arm
        self.link(optimised.run_id, Role.OPTIMISE, arm, x)
        self.chosen_prompt[arm] = {"instruction": chosen.instruction, "calibration": chosen.calibration}
        self.say(f"{arm}: searched on dev, {len(optimised.trials)} candidates, {optimised.calls_spent} calls in "
                 f"{optimised.seconds:.0f} s; chosen shots={chosen.n_shots}, calibration={chosen.calibration} "
                 f"(dev {optimised.dev_score:.3f})")


def run_experiment(exp: Experiment, store: Store, console=None) -> int:
    """Run everything the experiment asks for; returns its experiment id in the store."""
    # a second `run` of the same experiment would train into the same model folders: refused
    with hold(exp.output_dir() / ".run.lock", f"running experiment '{exp.name}'"):
        return _run_experiment(exp, store, console)


def _run_experiment(exp: Experiment, store: Store, console=None) -> int:
    began = time.perf_counter()
    data = load_task(exp.task)  # data mistakes fail before the experiment has a row in the store
    experiment_id = store.add_experiment(exp.name, to_dict(exp))
    ctx = RunContext(exp, store, experiment_id, data, console)
    ctx.say(f"experiment {experiment_id}: {exp.name} — train {len(ctx.data.train)}, dev {len(ctx.data.dev)}, "
            f"test {len(ctx.data.test)} items; store {store.path}")
    ctx.ood = load_task(exp.ood.task_spec(exp.task)) if exp.ood else None
    run_arms(ctx)
    if exp.curves:
        run_curves(ctx)
    if consistency_arms(exp):
        run_consistency(ctx)
    if exp.flexibility:
        run_flexibility(ctx)
    ctx.phases["total"] = time.perf_counter() - began
    sizes = {"train": len(ctx.data.train), "dev": len(ctx.data.dev), "test": len(ctx.data.test)}
    store.finish_experiment(experiment_id, ExperimentSummary(ctx.phases, sizes).to_dict())
    return experiment_id


def arm_order(exp: Experiment) -> list[ArmEntry]:
    """Models before their users: fine-tune arms first, distilled students after the fine-tunes that
    may teach them, then prompt arms (combined arms run on the fine-tunes trained by then)."""
    return sorted(exp.arms, key=lambda a: (a.kind != "finetune", bool((a.finetune or {}).get("teacher"))))


def run_arms(ctx: RunContext) -> None:
    """Every arm, models before their users: each arm's chain (`run_arm`), or with `adaptive:` every
    model first and then all arms' test items together (`run_adaptive`)."""
    for entry in arm_order(ctx.exp):
        prepare_arm(ctx, entry)
        if ctx.exp.adaptive is None:
            score_arm(ctx, entry)  # adaptive: every arm's test items wait until all arms are trained
    if ctx.exp.adaptive is not None:
        run_adaptive(ctx)


def run_arm(ctx: RunContext, entry: ArmEntry) -> None:
    """One arm's chain: train or tune (fine-tune arms), score on test, serving probe, out of domain, repeats."""
    prepare_arm(ctx, entry)
    score_arm(ctx, entry)


def prepare_arm(ctx: RunContext, entry: ArmEntry) -> None:
    """A fine-tune arm's model: trained, or tuned on dev (a prompt arm needs nothing here)."""
    if entry.kind == "finetune" and entry.name in ctx.tuned:
        pass  # a teacher trained already, for its student
    elif entry.kind == "finetune" and ctx.exp.tuned(entry) and not (entry.finetune or {}).get("teacher"):
        from .tuning import tune_finetune

        ctx.tuned[entry.name], ctx.chosen[entry.name] = tune_finetune(ctx, entry)
    elif entry.kind == "finetune":
        ctx.tuned[entry.name] = train_arm(ctx, entry)


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
    from .finetune import run_finetune
    from .finetune.outputs import is_finished
    from .tuning import training_format

    arm = build_finetune_arm(entry, overrides={**ctx.chosen.get(entry.name, {}), **(overrides or {})})
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
    meta = json.loads((out / "tuneoff.json").read_text())
    fp = meta.get("fingerprint", "")
    try:
        row = store.run(int(meta["run_id"]))
    except TuneoffError:
        row = None
    if row is not None and row["kind"] == "finetune" and row["arm"] == arm and (not fp or row["fingerprint"] == fp):
        return int(row["id"])
    found = store.find_run(fp, statuses=("done",)) if fp else None
    if found is not None:
        return int(found["id"])
    run_id = store.start_run("finetune", arm=arm, task=meta.get("task", ""), split="train", model=meta.get("base", ""),
                             spec=meta.get("arm", {}), fingerprint=fp)
    store.finish_run(run_id, "done", {**meta.get("stats", {}), "output_dir": str(out), "trained_in_another_store": True})
    return run_id


def distilled_data(ctx: RunContext, entry: ArmEntry, arm) -> TaskData:
    """The task with a training split whose targets are the teacher arm's answers to the first
    `n_unlabelled` training inputs; the teacher's run is linked to the student (Role.DISTILL)."""
    import dataclasses

    from .evaluate.distill import teacher_answers

    teacher = ctx.exp.arm(arm.teacher)
    if teacher.kind == "finetune" and teacher.name not in ctx.tuned:
        ctx.tuned[teacher.name] = train_arm(ctx, teacher)
    items = ctx.data.train[:arm.n_unlabelled] if arm.n_unlabelled else ctx.data.train
    # the teacher as declared (an `optimise` teacher is not re-optimised for this)
    with ctx.phase(f"{entry.name}: teacher {teacher.name}"):
        run_id, answered = teacher_answers(ctx.backend(ctx.weights_of(teacher)), build_prompt_arm(teacher, ctx.exp.task),
                                           items, ctx.data, ctx.store, ctx.experiment_id, ctx.console)
    ctx.link(run_id, Role.DISTILL, entry.name)
    ctx.say(f"{entry.name}: {teacher.name} answered {len(items)} training inputs, {len(answered)} usable as targets")
    return dataclasses.replace(ctx.data, train=answered)


def _has_checkpoints(out: Path) -> bool:
    from .finetune.checkpoint import complete_checkpoints

    return bool(complete_checkpoints(out / "checkpoints"))


def evaluate_arm(ctx: RunContext, entry: ArmEntry, model: str | None = None, overrides: dict | None = None,
                 role: Role = Role.ARM, x: int | None = None, split: str = "test") -> int:
    """Score one arm on a split (optimising it on dev first if it asks to); returns the run id."""
    from .evaluate.runner import optimise_then_evaluate

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
    tuned) with seed + r; a prompt arm redraws demos and samples with seed + r. Deterministic prompts
    (scored labels, first or similar demos) repeat from the call cache at no cost, with spread 0."""
    for r in range(1, ctx.exp.repeats_of(entry)):
        if entry.kind == "finetune":
            seed = int((ctx.chosen.get(entry.name) or entry.finetune or {}).get("seed", 0)) + r
            out = train_arm(ctx, entry, overrides={"seed": seed}, role=Role.REPEAT_TRAIN, x=r)
            evaluate_arm(ctx, entry, model=str(out), role=Role.REPEAT, x=r)
        else:
            seed = int((entry.prompt or {}).get("seed", 0)) + r
            chosen = {**ctx.chosen_prompt[entry.name], "optimise": None} if entry.name in ctx.chosen_prompt else {}
            evaluate_arm(ctx, entry, overrides={**chosen, "seed": seed}, role=Role.REPEAT, x=r)


def run_adaptive(ctx: RunContext) -> None:
    """`adaptive:`: the arms' test split in interleaved chunks, each arm stopping once its comparison with
    the best is settled (`tuneoff.adaptive`); then each arm's serving probe, out-of-domain score and
    repeats, the repeats on the items the arm scored."""
    import dataclasses

    from .adaptive import evaluate_adaptively

    for entry, run_id, items in evaluate_adaptively(ctx):
        probe_arm(ctx, entry, run_id)
        ood_arm(ctx, entry, run_id)
        run_repeats(dataclasses.replace(ctx, data=dataclasses.replace(ctx.data, test=items)), entry)


def evaluated_arm(ctx: RunContext, run_id: int):
    """The PromptArm an evaluation run scored, as stored (an optimised arm: the optimiser's choice)."""
    from .config.specs import from_dict
    from .prompting.arm import PromptArm

    return from_dict(PromptArm, json.loads(ctx.store.run(run_id)["spec_json"]), "arm")


def probe_arm(ctx: RunContext, entry: ArmEntry, run_id: int) -> None:
    """Time the arm as a server answers it (`tuneoff.evaluate.probe`), on its evaluation's weights and
    prompting: the latency and per-request cost the table shows come from here."""
    from .evaluate.probe import probe
    from .prompting import TaskContext

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

    from .evaluate import evaluate
    from .prompting import TaskContext

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


def run_curves(ctx: RunContext) -> None:
    """Metric vs k demos (a prompt arm) and vs n training examples (a fine-tune arm)."""
    prompt, tune = curve_arms(ctx.exp)
    for k in ctx.exp.curves.shots if prompt else []:
        shots_point(ctx, prompt, k)
    for n in ctx.exp.curves.n_train if tune else []:
        n_train_point(ctx, tune, n)


def on_curve_items(ctx: RunContext, entry: ArmEntry) -> RunContext:
    """`ctx` with the test items a curve of `entry` scores: every item, or under `adaptive:` the items the
    arm itself scored, so each point is on the same items as the arm (its own point exactly its number,
    from the cache) and an arm settled early costs no full-split curve."""
    import dataclasses

    from .adaptive import items_scored

    items = items_scored(ctx, entry.name)
    return ctx if items is None else dataclasses.replace(ctx, data=dataclasses.replace(ctx.data, test=items))


def curve_arms(exp: Experiment) -> tuple[ArmEntry | None, ArmEntry | None]:
    """(the prompt arm of the shots curve, the fine-tune arm of the n_train curve): named, else the
    first prompt arm that shows demos and the first fine-tune arm."""
    spec = exp.curves
    if spec is None:
        return None, None
    prompt = exp.arm(spec.prompt_arm) if spec.prompt_arm else next(
        (a for a in exp.arms if a.kind == "prompt" and (a.prompt or {}).get("shots", 0) > 0), None)
    tune = exp.arm(spec.finetune_arm) if spec.finetune_arm else next((a for a in exp.arms if a.kind == "finetune"), None)
    return prompt, tune


def shots_point(ctx: RunContext, prompt: ArmEntry, k: int) -> None:
    """One point of the demos curve: the prompt arm with k demos."""
    # a tuned arm's points keep what its search chose, with k demos (no search per point)
    chosen = {**ctx.chosen_prompt[prompt.name], "optimise": None} if prompt.name in ctx.chosen_prompt else {}
    evaluate_arm(on_curve_items(ctx, prompt), prompt, overrides={**chosen, "shots": k}, role=Role.CURVE, x=k)


def n_train_point(ctx: RunContext, tune: ArmEntry, n: int) -> None:
    """One point of the training-size curve: the fine-tune arm trained on n examples, then scored."""
    if tune.name in ctx.chosen and ctx.chosen[tune.name].get("n_train") == n:
        out = ctx.tuned[tune.name]  # the tuned arm's own model is this point
    else:
        out = train_arm(ctx, tune, overrides={"n_train": n}, role=Role.CURVE_TRAIN, x=n)
    evaluate_arm(on_curve_items(ctx, tune), tune, model=str(out), role=Role.CURVE, x=n)


def run_consistency(ctx: RunContext) -> None:
    """Probe each arm the experiment's `consistency` lists, and every arm that declares its own
    `paraphrases:` / `seeds:` (the arm's own lists win over the experiment's)."""
    from .evaluate.consistency import consistency
    from .prompting import TaskContext

    spec = ctx.exp.consistency or ConsistencySpec()
    for entry in consistency_arms(ctx.exp):
        # a tuned arm is probed as its search chose it (instruction and calibration)
        chosen = {**ctx.chosen_prompt[entry.name], "optimise": None} if entry.name in ctx.chosen_prompt else None
        arm = build_prompt_arm(entry, ctx.exp.task, overrides=chosen)
        paraphrases, seeds = arm.paraphrases or spec.paraphrases, arm.seeds or spec.seeds
        if seeds:
            # seeds only matter when the model samples
            arm = arm.replace(temperature=spec.temperature, mode="generate" if arm.mode == "score" else arm.mode)
        items = ctx.data.test[:spec.n_items] if spec.n_items else ctx.data.test
        with ctx.phase(f"{entry.name}: consistency"):
            result = consistency(ctx.backend(ctx.weights_of(entry)), arm, items, TaskContext.of(ctx.data),
                                 paraphrases=paraphrases, seeds=seeds or [arm.seed], store=ctx.store)
        ctx.link(result.run_id, Role.CONSISTENCY, entry.name)
        ctx.say(f"{entry.name}: agreement {result.agreement:.1%} across {len(result.variants)} variants, "
                f"{result.metric} {result.mean:.3f} ± {result.std:.3f}")


def consistency_arms(exp: Experiment) -> list[ArmEntry]:
    listed = exp.consistency.arms if exp.consistency else []
    return [a for a in exp.arms if a.name in listed or (a.prompt or {}).get("paraphrases") or (a.prompt or {}).get("seeds")]


def run_flexibility(ctx: RunContext) -> None:
    """Score each fine-tuned model and the base model on a second task with the same prompt arm."""
    from .evaluate import evaluate
    from .prompting import TaskContext

    flex = ctx.exp.flexibility
    data = load_task(flex.task)
    task = TaskContext.of(data)
    entry = ArmEntry(name=f"flex-{flex.task.name}", prompt=flex.prompt)
    arm = build_prompt_arm(entry, flex.task)
    models = {Role.FLEXIBILITY_BASE: [("base", ctx.exp.model)],
              Role.FLEXIBILITY: [(name, str(path)) for name, path in ctx.tuned.items()]}
    for role, pairs in models.items():
        for name, model in pairs:
            with ctx.phase(f"{name}: flexibility"):
                result = evaluate(ctx.backend(model), arm, data.test, task, store=ctx.store, split="test",
                                  console=ctx.console, experiment_id=ctx.experiment_id)
            ctx.link(result.run_id, role, name)
            ctx.say(f"{name} on {flex.task.name}: {result.main.name} {result.main.value:.3f}")
