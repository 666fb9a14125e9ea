"""The work of an experiment beyond its arms' own chains: learning-curve points, the consistency
probes, the flexibility check and, under `adaptive:`, all arms' test items scored together."""

from __future__ import annotations

import dataclasses

from ..config.experiment import ArmEntry, ConsistencySpec, build_prompt_arm
from ..config.task import load_task
from ..records import Role
from .arms import evaluate_arm, ood_arm, prepare_arm, probe_arm, run_repeats, train_arm
from .context import RunContext
from .plan import arm_order, consistency_arms


def run_adaptive(ctx: RunContext) -> None:
    """`adaptive:`: every arm's model first, then the arms' test split in interleaved chunks, each arm
    stopping once its comparison with the best is settled (`adaptive.py`); then each arm's serving
    probe, out-of-domain score and repeats, the repeats on the items the arm scored."""
    from .adaptive import evaluate_adaptively

    for entry in arm_order(ctx.exp):
        prepare_arm(ctx, entry)
    for entry, run_id, items in evaluate_adaptively(ctx):
        probe_arm(ctx, entry, run_id)
        ood_arm(ctx, entry, run_id)
        run_repeats(dataclasses.replace(ctx, data=dataclasses.replace(ctx.data, test=items)), entry)


def on_curve_items(ctx: RunContext, entry: ArmEntry) -> RunContext:
    """`ctx` with the test items a curve of `entry` scores: every item, or under `adaptive:` the items the
    arm itself scored, so each point is on the same items as the arm (its own point exactly its number,
    from the cache) and an arm settled early costs no full-split curve."""
    from .adaptive import items_scored

    items = items_scored(ctx, entry.name)
    return ctx if items is None else dataclasses.replace(ctx, data=dataclasses.replace(ctx.data, test=items))


def shots_point(ctx: RunContext, prompt: ArmEntry, k: int) -> None:
    """One point of the demos curve: the prompt arm with k demos."""
    # a tuned arm's points keep what its search chose, with k demos (no search per point)
    chosen = ctx.chosen_prompt(prompt.name) or {}
    evaluate_arm(on_curve_items(ctx, prompt), prompt, overrides={**chosen, "shots": k}, role=Role.CURVE, x=k)


def n_train_point(ctx: RunContext, tune: ArmEntry, n: int) -> None:
    """One point of the training-size curve: the fine-tune arm trained on n examples, then scored."""
    if ctx.chosen(tune.name).get("n_train") == n:
        out = ctx.model_of(tune.name)  # the tuned arm's own model is this point
    else:
        out = train_arm(ctx, tune, overrides={"n_train": n}, role=Role.CURVE_TRAIN, x=n)
    evaluate_arm(on_curve_items(ctx, tune), tune, model=str(out), role=Role.CURVE, x=n)


def run_consistency(ctx: RunContext) -> None:
    """Probe each arm the experiment's `consistency` lists, and every arm that declares its own
    `paraphrases:` / `seeds:` (the arm's own lists win over the experiment's)."""
    from ..evaluate.consistency import consistency
    from ..prompting import TaskContext

    spec = ctx.exp.consistency or ConsistencySpec()
    for entry in consistency_arms(ctx.exp):
        # a tuned arm is probed as its search chose it (instruction and calibration)
        arm = build_prompt_arm(entry, ctx.exp.task, overrides=ctx.chosen_prompt(entry.name))
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


def run_flexibility(ctx: RunContext) -> None:
    """Score each fine-tuned model and the base model on a second task with the same prompt arm."""
    from ..evaluate import evaluate
    from ..prompting import TaskContext

    flex = ctx.exp.flexibility
    data = load_task(flex.task)
    task = TaskContext.of(data)
    entry = ArmEntry(name=f"flex-{flex.task.name}", prompt=flex.prompt)
    arm = build_prompt_arm(entry, flex.task)
    tuned = [(name, state.model) for name, state in ctx.arms.items() if state.model]
    models = {Role.FLEXIBILITY_BASE: [("base", ctx.exp.model)], Role.FLEXIBILITY: tuned}
    for role, pairs in models.items():
        for name, model in pairs:
            with ctx.phase(f"{name}: flexibility"):
                result = evaluate(ctx.backend(model), arm, data.test, task, store=ctx.store, split="test",
                                  console=ctx.console, experiment_id=ctx.experiment_id)
            ctx.link(result.run_id, role, name)
            ctx.say(f"{name} on {flex.task.name}: {result.main.name} {result.main.value:.3f}")
