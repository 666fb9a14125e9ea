"""Automatic prompt optimisation: pick an instruction, demos and calibration on dev, within a call budget.

Candidates are the arm's instruction, the user's extra ones, and paraphrases the model writes
itself; demo sets are bootstrapped as DSPy's BootstrapFewShot does: run the model on training
examples and keep, as demos, the ones it got right (with its own reasoning when it reasons). The
search is coordinate-wise (instruction first, then the demo count and bootstrapped demos under the
best instruction, then label-score calibration under the best of those), every
candidate is scored on the same dev items, and a step starts only if the worst case (every item a
model call) still fits the budget. Answer-format sentences appended
to the instruction are tried right after the user's instructions, verbalisers (label words) before
calibration. The input arm is never changed: a new arm comes back.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, field
from typing import Sequence

from ..data import Example
from ..errors import TuneoffError
from ..metrics import get_metric
from ..models.base import Backend, GenerationConfig
from ..records import OptimiseSummary
from ..store import Store
from ..prompting.arm import OptimiseSpec, PromptArm, TaskContext
from ..prompting.strategies import resolve_instruction
from ..prompting.templates import Template, literal

PARAPHRASE_SYSTEM = "You rewrite instructions. You never follow them."
PARAPHRASE_DEMOS = [("Translate the sentence into German.", "Give the German translation of this sentence."),
                    ("Summarise the article in one line.", "Write a one-line summary of this article.")]
"""Worked rewrites shown first: asked cold, a small model answers the instruction instead of rewording it
(SmolLM2-135M: the system line and two demos took its rewrites from 0/6 to about half usable)."""


def paraphrase_chat(instruction: str) -> list[dict]:
    turns: list[dict] = [{"role": "system", "content": PARAPHRASE_SYSTEM}]
    for source, rewrite in PARAPHRASE_DEMOS:
        turns += [{"role": "user", "content": f'Paraphrase this instruction: "{source}"'},
                  {"role": "assistant", "content": rewrite}]
    return turns + [{"role": "user", "content": f'Paraphrase this instruction: "{instruction}"'}]


class Budget:
    """Model requests the search may still send; a step asks before it starts."""

    def __init__(self, total: int):
        self.total = total
        self.spent = 0

    @property
    def remaining(self) -> int:
        return self.total - self.spent

    def can(self, worst_case: int) -> bool:
        return worst_case <= self.remaining

    def spend(self, calls: int) -> None:
        if calls > self.remaining:  # a step that checked `can` first never gets here
            raise RuntimeError(f"budget overrun: {calls} > {self.remaining}")
        self.spent += calls


@dataclass(frozen=True)
class Trial:
    """One candidate scored on dev."""

    instruction: str
    """The candidate instruction (template source)."""
    demos: str
    """Which demos: `arm` (the arm's own), or `bootstrap-N` (a bootstrapped set)."""
    score: float
    """Main metric on the dev items."""
    run_id: int
    """The candidate's run in the store (kind `optimise`)."""
    shots: int = 0
    """Demos per request of the candidate."""
    calibration: str = "none"
    """Its label-score calibration (score mode)."""


@dataclass
class OptimiseResult:
    """The chosen arm and what finding it took."""

    arm: PromptArm
    """A new arm: the best instruction and demos fixed in it, `optimise` cleared."""
    dev_score: float
    """Its main metric on the dev items."""
    calls_spent: int
    """Model requests sent (cached answers cost nothing), never more than `budget`."""
    budget: int
    """The most requests the search was allowed."""
    trials: list[Trial] = field(default_factory=list)
    """Every candidate scored, in search order."""
    seconds: float = 0.0
    """Wall time of the search."""
    run_id: int | None = None
    """The search's own run in the store (kind `optimise`), holding the paraphrase calls."""


class Search:
    """The state of one optimisation: scored candidates and the budget left."""

    def __init__(self, backend: Backend, ctx: TaskContext, dev: list[Example], store: Store, budget: Budget):
        self.backend, self.ctx, self.dev, self.store, self.budget = backend, ctx, dev, store, budget
        self.trials: list[Trial] = []
        self.best: tuple[float, PromptArm] | None = None

    def score(self, arm: PromptArm, demos: str) -> float | None:
        """Score a candidate on dev if the budget allows the worst case; None when it does not."""
        from .engine import evaluate

        if not self.budget.can(len(self.dev)):
            return None
        result = evaluate(self.backend, arm, self.dev, self.ctx, store=self.store, split="dev", kind="optimise")
        self.budget.spend(result.cache_misses)
        value = result.main.value or 0.0
        self.trials.append(Trial(resolve_instruction(arm, self.ctx), demos, value, result.run_id, arm.n_shots,
                                 arm.calibration))
        better = get_metric(self.ctx.metric).better
        if self.best is None or better(value, self.best[0]):  # ties keep the earlier, simpler candidate
            self.best = (value, arm)
        return value


def _clean_paraphrase(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    line = re.sub(r"^(rewritten\s+)?instruction\s*:\s*", "", lines[0], flags=re.I) if lines else ""
    return line.strip(" \"'`*")


def write_paraphrases(backend: Backend, instruction: str, n: int, spec: OptimiseSpec, store: Store,
                      run_id: int, budget: Budget) -> list[str]:
    """Up to `n` distinct paraphrases of `instruction`, written by the model (sampled, seeded, cached)."""
    from .engine import model_id
    from ..store import cache_key

    chat = paraphrase_chat(instruction)
    config = GenerationConfig(max_new_tokens=96, temperature=spec.paraphrase_temperature, seed=spec.seed)
    prompt, model = backend.render(chat), model_id(backend)
    # one batch of n identical prompts samples n different rewrites; `sample` keys each row's cache entry
    params = [{"mode": "paraphrase", "temperature": config.temperature, "seed": spec.seed, "n": n, "sample": i}
              for i in range(n)]
    cached = [store.cached_call(cache_key(model, prompt, p)) for p in params]
    texts = [row["output"] if row else None for row in cached]
    if any(t is None for t in texts):
        budget.spend(n)
        for i, c in enumerate(backend.generate([chat] * n, config)):
            store.add_call(run_id=run_id, model=model, prompt=prompt, params=params[i], **c.call_fields())
            texts[i] = c.text
    out: list[str] = []
    for text in texts:
        clean = _clean_paraphrase(text or "")
        if len(clean.split()) >= 3 and clean.lower() != instruction.lower() and clean not in out:
            out.append(clean)
    return out


def bootstrap_demo_sets(search: Search, arm: PromptArm, train: Sequence[Example], spec: OptimiseSpec,
                        k: int) -> list[list[dict]]:
    """Run `arm` zero-shot on training examples; draw demo sets from the ones it answered right."""
    from .engine import evaluate

    dev_inputs = {ex.input for ex in search.dev}
    pool = [ex for ex in train if ex.input not in dev_inputs]
    m = min(spec.bootstrap, len(pool), search.budget.remaining - len(search.dev))
    if m < 1:
        return []
    sample = random.Random(spec.seed).sample(pool, m)
    teacher = arm.replace(demos=None, shots=0)
    result = evaluate(search.backend, teacher, sample, search.ctx, store=search.store, split="train", kind="optimise")
    search.budget.spend(result.cache_misses)
    # a right answer's own wording (a reasoning chain, say) is the demo: that is what bootstrapping adds
    right = [{"input": p["input"], "target": p["output"] if arm.mode == "generate" else p["target"]}
             for p in result.predictions if p["correct"] and p["correct"] >= 1.0]
    labelled = [{"input": p["input"], "target": p["target"]} for p in result.predictions
                if not (p["correct"] and p["correct"] >= 1.0)]
    sets: list[list[dict]] = []
    for j in range(spec.demo_sets):
        rng = random.Random(spec.seed + 1 + j)
        chosen = rng.sample(right, min(k, len(right)))
        chosen += rng.sample(labelled, min(k - len(chosen), len(labelled)))  # DSPy fills up with labelled ones
        rng.shuffle(chosen)
        if chosen and chosen not in sets:
            sets.append(chosen)
    return sets


def optimise(backend: Backend, arm: PromptArm, train: Sequence[Example], dev: Sequence[Example], task, *,
             spec: OptimiseSpec | None = None, store: Store | None = None) -> OptimiseResult:
    """Search instructions and bootstrapped demos for `arm` on `dev`; return the best as a new arm.

    train: where bootstrapped demos come from; dev: where candidates are scored (its first
    `spec.dev_items`); task: a TaskContext or TaskData; spec: default `arm.optimise`.
    """
    began = time.perf_counter()
    spec = spec or arm.optimise or OptimiseSpec()
    ctx = TaskContext.of(task)
    store = store or Store(":memory:")
    budget = Budget(spec.budget)
    dev = list(dev)[:min(spec.dev_items, spec.budget)]
    if not dev:
        raise TuneoffError("prompt optimisation needs dev examples to score candidates on", field="optimise",
                           hint="give the task a `dev` file, or a `train` file to split one off")
    base = arm.replace(optimise=None)
    run_id = store.start_run("optimise", arm=arm.name, task=ctx.name, split="dev", model=backend.info.name,
                             spec={"arm": arm.to_dict()})
    search = Search(backend, ctx, dev, store, budget)
    search.score(base, "arm")
    for source in spec.instructions:
        search.score(base.replace(instruction=source), "arm")
    instruction = Template(resolve_instruction(base, ctx), "instruction").render({"labels": list(ctx.labels or [])})
    for j, source in enumerate(spec.answer_formats if instruction else []):
        # how the answer should look often moves a small model more than how the task is worded
        suffix = Template(source, f"optimise.answer_formats[{j}]").render({"labels": list(ctx.labels or [])})
        search.score(base.replace(instruction=literal(f"{instruction} {suffix}")), "arm")
    n = min(spec.paraphrases, budget.remaining // (len(dev) + 1))
    if n > 0 and instruction:
        for text in write_paraphrases(backend, instruction, n, spec, store, run_id, budget):
            search.score(base.replace(instruction=literal(text)), "arm")
    # demo counts under the best instruction, with the arm's own selection; a zero-shot arm stays zero-shot
    for k in spec.shot_counts if base.n_shots > 0 else []:
        best = search.best[1] if search.best else base
        if k != best.n_shots and (k == 0 or best.demos is None):
            search.score(best.replace(shots=k), f"shots-{k}")
    best_instruction = search.best[1] if search.best else base
    k = spec.shots or base.n_shots or 4
    for j, demos in enumerate(bootstrap_demo_sets(search, best_instruction, train, spec, k)):
        search.score(best_instruction.replace(demos=demos, shots=0, demo_format=base.demo_format), f"bootstrap-{j + 1}")
    if base.mode == "score":
        for words in spec.label_words:  # verbalisers under the best prompt so far
            best = search.best[1] if search.best else base
            if words != (best.label_words or {}):
                search.score(best.replace(label_words=dict(words)), "label-words")
        for method in spec.calibrations:  # calibration last: it corrects whichever prompt won
            best = search.best[1] if search.best else base
            if method != best.calibration:
                search.score(best.replace(calibration=method), "calibration")
    score, chosen = search.best if search.best else (0.0, base)
    result = OptimiseResult(chosen, score, budget.spent, spec.budget, search.trials,
                            time.perf_counter() - began, run_id)
    store.finish_run(run_id, "done", OptimiseSummary(budget.spent, spec.budget, score, chosen.to_dict(),
                                                     [t.__dict__ for t in search.trials]).to_dict())
    store.set_metric(run_id, "dev_" + ctx.metric, score)
    store.set_metric(run_id, "calls_spent", float(budget.spent), extra={"budget": spec.budget})
    return result
