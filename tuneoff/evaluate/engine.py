"""Running a prompt arm over a split: batched calls, the call cache, resume, per-item predictions.

Items go to the backend in chunks. Before a prompt is sent, the store is asked for a call with the
same cache key (model + rendered prompt + decoding params): greedy and seeded calls are
deterministic, so a stored answer is the answer. Each chunk's calls and predictions are written as
soon as it finishes, so a run killed half-way resumes from its last chunk: the run fingerprint
(model + arm + items + task) finds it again and its `done_items` are skipped.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from ..data import Example, digest
from ..errors import TuneoffError
from ..locks import hold
from ..metrics import MetricValue, free_text_warning, get_metric, item_scores
from ..models.base import NO_SCORE, Backend, GenerationConfig
from ..prompting.answers import parse_reply
from ..prompting.arm import PromptArm, TaskContext, generation_cap
from ..prompting.strategies import Prompter, prepare
from ..records import EvalSummary, MainMetric
from ..store import Store, cache_key
from .calibration import calibrate, check_label_words, reference_chats
from .lengths import reference_warnings
from .scoring import argmax_label, label_token_ids, normed, score_labels
from .summary import summarise


@dataclass
class EvalResult:
    """One evaluation of one arm on one split; everything in it is also in the store under `run_id`."""

    run_id: int
    """The evaluation's run in the store (kind `eval`, or `optimise` for the optimiser's candidates)."""
    arm: PromptArm
    """The arm evaluated (for an optimised arm: the one the optimiser chose)."""
    split: str
    """The split's name, as stored."""
    metrics: dict[str, MetricValue]
    """Every metric stored for the run, by name (the main metric carries its CI)."""
    predictions: list[dict] = field(repr=False)
    """Per item: input, target, output, prediction, correct, extra (violation, hallucinated, cached, demos)."""
    cache_hits: int = 0
    """Items this session answered from stored calls."""
    cache_misses: int = 0
    """Items this session sent to the model (its model calls)."""
    resumed: int = 0
    """Items an interrupted earlier attempt had already finished."""
    wall_seconds: float = 0.0
    """Wall time of this session's evaluation (model calls, parsing, store writes)."""
    warnings: list[str] = field(default_factory=list)
    """Problems with the arm's setup the numbers should be read with (e.g. indistinct label words)."""

    @property
    def main(self) -> MetricValue:
        return next(iter(self.metrics.values()))


def constrained_schema(arm: PromptArm, ctx: TaskContext) -> str | None:
    """The JSON Schema a `constrained: true` arm decodes under (the task's `output.schema`)."""
    if not arm.constrained:
        return None
    if ctx.output is None or ctx.output.json_schema is None:
        raise TuneoffError("constrained decoding needs the task's output schema", field="constrained",
                           hint="add `output: {schema: FILE.json}` to the task")
    return ctx.output.schema_text


def model_id(backend: Backend) -> str:
    """The model as the cache knows it: a spec in another precision, or another engine, gives other answers."""
    from ..models import engine_of

    engine = engine_of(backend, batched=True)
    compiled = engine != "llamacpp" and getattr(backend.info, "decode", "eager") == "compiled"
    return f"{backend.info.name}|{backend.info.dtype}" + ("|llamacpp" if engine == "llamacpp" else "") + \
        ("|compiled" if compiled else "")


def run_fingerprint(backend: Backend, arm: PromptArm, examples: Sequence[Example], ctx: TaskContext,
                    split: str, kind: str = "eval") -> str:
    """Same fingerprint = same run: the model, the arm, the items, and what of the task shapes prompts."""
    blob = json.dumps({"model": model_id(backend), "arm": arm.to_dict(), "items": digest(examples),
                       "pool": digest(ctx.pool), "labels": ctx.labels, "metric": ctx.metric,
                       "instruction": ctx.instruction, "split": split, "kind": kind}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class CallRef:
    """A stored model call an item's prediction comes from."""

    id: int
    """Row id in the `calls` table."""
    output: str
    """The reply text (score mode: the winning label)."""
    cached: bool
    """True when the call was found in the store rather than made now."""
    logprobs: dict | None = None
    """Score mode: label -> summed log-probability."""


class ChunkRunner:
    """Sends one chunk of items through the cache and the backend, and writes calls and predictions."""

    def __init__(self, backend: Backend, prompter: Prompter, store: Store, run_id: int):
        self.backend, self.prompter, self.store, self.run_id = backend, prompter, store, run_id
        self.arm, self.ctx = prompter.arm, prompter.ctx
        self.model = model_id(backend)
        self.metric = get_metric(self.ctx.metric)
        self.metric_names = [self.ctx.metric, *self.ctx.secondary]
        self.hits = self.misses = 0
        self.over_context: list[str] = []
        """Ids of items whose prompt is longer than the model's context (warned about at the end)."""
        if self.arm.mode == "score":
            self.labels = list(self.ctx.labels or ())
            self.words = label_words(self.arm, self.labels)
            self.references: dict[str, list[float]] = {}
            """Calibration: rendered reference prompt -> its normed label scores (fixed demos: one prompt)."""
            self.label_tokens: tuple[int, ...] = (1,) * len(self.labels)
            """Tokens of each scored label reply (the same for every prompt), for score_norm: mean."""
            self.params = {"mode": "score", "labels": self.words, "norm": self.arm.score_norm,
                           "end_of_turn": self.arm.score_end_of_turn}
        else:
            sampled = self.arm.temperature > 0
            schema = constrained_schema(self.arm, self.ctx)
            self.config = GenerationConfig(max_new_tokens=generation_cap(self.arm, self.ctx, backend.count_tokens),
                                           temperature=self.arm.temperature,
                                           seed=self.arm.seed if sampled else None, stop=prompter.stop,
                                           json_schema=schema)
            # a greedy answer does not depend on the seed: leaving it out lets seed variants share calls
            self.params = {"mode": "generate", "max_new_tokens": self.config.max_new_tokens,
                           "temperature": self.config.temperature, "top_p": self.config.top_p,
                           "stop": list(self.config.stop), **({"seed": self.arm.seed} if sampled else {}),
                           **({"json_schema": schema} if schema else {})}

    def run(self, items: Sequence[tuple[int, Example]]) -> None:
        demos = self.prompter.demos_many([ex for _, ex in items])
        chats = [self.prompter.messages(ex, d) for (_, ex), d in zip(items, demos)]
        prompts = [self.backend.render(chat) for chat in chats]
        refs = [self._cached(p) for p in prompts]
        todo: dict[str, int] = {}  # unique prompts still to send, first position of each
        for i, ref in enumerate(refs):
            if ref is None:
                todo.setdefault(prompts[i], i)
        self._check_context(items, prompts)
        answers = self._compute([chats[i] for i in todo.values()]) if todo else []
        # the chunk's calls and predictions land in one transaction: a process killed between them
        # would leave calls that a rerun cannot reuse (score calls need the prediction's log-probs)
        pending = {prompt: CallRef(0, answer[1], False, answer[2]) for prompt, answer in zip(todo, answers)}
        merged = [ref or pending[p] for ref, p in zip(refs, prompts)]
        calibrated = self._calibrated(items, demos, merged) if self._calibrating else [None] * len(refs)
        judged = [self._judge(ref, c) for ref, c in zip(merged, calibrated)]
        # every metric's per-item statistics, computed here in a batch (an embedding model pays per call)
        # and kept on the prediction: comparisons, repeats and the item explorer read them from the store
        stats = item_scores(self.metric_names, [j[0] for j in judged], [ex.refs() for _, ex in items])
        with self.store.transaction():
            fresh = {prompt: self._store_call(prompt, answer) for prompt, answer in zip(todo, answers)}
            refs = [ref or fresh[p] for ref, p in zip(refs, prompts)]
            self.store.add_predictions(self.run_id, [
                self._row(i, ex, d, ref, j, {name: rows[k].tolist() for name, rows in stats.items()})
                for k, ((i, ex), d, ref, j) in enumerate(zip(items, demos, refs, judged))])
        self.hits += sum(r.cached for r in refs)
        self.misses += sum(not r.cached for r in refs)

    def _check_context(self, items: Sequence[tuple[int, Example]], prompts: list[str]) -> None:
        limit = getattr(self.backend, "context_length", None)
        if not limit:
            return
        for (i, ex), prompt in zip(items, prompts):
            if self.backend.count_tokens(prompt) > limit:
                self.over_context.append(ex.id or str(i))

    @property
    def _calibrating(self) -> bool:
        return self.arm.mode == "score" and self.arm.calibration != "none"

    def _calibrated(self, items, demos, refs: list[CallRef]) -> list[list[float]]:
        """Each item's calibrated label scores: its raw scores corrected by its reference prompts'
        (content-free inputs, or the empty domain premise), scored once per distinct prompt."""
        method, todo, per_item = self.arm.calibration, {}, []
        for (_, ex), d in zip(items, demos):
            prompts = []
            for chat in reference_chats(self.prompter, ex, d, method):
                prompts.append(self.backend.render(chat))
                if prompts[-1] not in self.references:
                    todo.setdefault(prompts[-1], chat)
            per_item.append(prompts)
        if todo:
            scored = score_labels(self.backend, list(todo.values()), self.words, self.arm.score_end_of_turn)
            self.label_tokens = scored[0].tokens
            for prompt, s in zip(todo, scored):
                self.references[prompt] = s.normed(self.arm.score_norm)
        return [calibrate(normed([ref.logprobs[lab] for lab in self.labels], self.label_tokens, self.arm.score_norm),
                          [self.references[p] for p in prompts], method) for ref, prompts in zip(refs, per_item)]

    def _cached(self, prompt: str) -> CallRef | None:
        row = self.store.cached_call(cache_key(self.model, prompt, self.params))
        if row is None:
            return None
        if self.arm.mode == "generate":
            return CallRef(row["id"], row["output"], True)
        extra = self.store.call_prediction_extra(row["id"]) or {}
        # a score call is only reusable with its per-label log-probs (kept on the prediction)
        return CallRef(row["id"], row["output"], True, extra["logprobs"]) if "logprobs" in extra else None

    def _compute(self, chats: list) -> list[tuple[dict, str, dict | None]]:
        """(call fields, output, label log-probs or None) per chat: the model's work, nothing stored yet."""
        if self.arm.mode == "generate":
            return [(c.call_fields(), c.text, None) for c in self.backend.generate(chats, self.config)]
        out = []
        for s in score_labels(self.backend, chats, self.words, self.arm.score_end_of_turn):
            best = s.best(self.labels, self.arm.score_norm)
            out.append((s.call_fields(best), best, dict(zip(self.labels, s.logprobs))))
        return out

    def _store_call(self, prompt: str, answer: tuple[dict, str, dict | None]) -> CallRef:
        fields, output, logprobs = answer
        call_id = self.store.add_call(run_id=self.run_id, model=self.model, prompt=prompt, params=self.params, **fields)
        return CallRef(call_id, output, False, logprobs)

    def _judge(self, ref: CallRef, calibrated: list[float] | None) -> tuple[str | None, dict]:
        """(prediction, extra: violation, hallucinated, log-probs) of one item's reply."""
        extra: dict = {}
        if self.arm.mode == "score":
            # a backend that could score no label (a server without logprobs whose reply matched none)
            # leaves a guess, counted as a format violation: the scoring failure rate
            unscored = bool(ref.logprobs) and all(v <= NO_SCORE for v in ref.logprobs.values())
            prediction, violation, hallucinated = ref.output, unscored, False
            extra["logprobs"] = ref.logprobs
            if calibrated is not None:
                prediction = argmax_label(self.labels, calibrated)
                extra["calibrated"] = dict(zip(self.labels, calibrated))
        else:
            parsed = parse_reply(ref.output, labels=self.ctx.labels, metric=self.ctx.metric,
                                 extractor=self.arm.extractor, cot=self.arm.chain_of_thought)
            prediction, violation, hallucinated = parsed.prediction, parsed.violation, parsed.hallucinated
        extra.update(violation=violation, hallucinated=hallucinated)
        return prediction, extra

    def _row(self, item: int, ex: Example, demos: Sequence[Example], ref: CallRef,
             judged: tuple[str | None, dict], stats: dict[str, list[float]]) -> dict:
        prediction, judged_extra = judged
        extra: dict = {"cached": ref.cached, "demos": [d.id for d in demos], **judged_extra, "stats": stats}
        if len(ex.refs()) > 1:
            extra["references"] = list(ex.refs())
        # `correct`: the main metric's own item score mapped to [0, 1] (a sentence-level score for a
        # corpus metric); the figures themselves come from the statistics in `extra["stats"]`
        score = self.metric.item_from_stats(np.asarray(stats[self.metric.name]))
        return {"item": item, "example_id": ex.id or str(item), "input": ex.input, "target": ex.target,
                "output": ref.output, "prediction": prediction, "correct": self.metric.unit(score),
                "call_id": ref.id, "extra": extra}


def ran_on(backend: Backend) -> str:
    """Precision and machine of an evaluation, for the report: scores move with the dtype (and, in the
    last bits, with the CPU's kernels), so each arm's figure says where it was computed."""
    from ..models.cpu import cpu_features

    info = backend.info
    if info.device == "remote":
        return "a served model (precision and machine: the server's)"
    where = f"{info.device} ({cpu_features().model or 'unknown CPU'})" if info.device == "cpu" else info.device
    return f"{info.dtype} on {where}"


def label_words(arm: PromptArm, labels: list[str]) -> list[str]:
    """The text scored for each label: its `label_words` entry, else the label itself."""
    words = arm.label_words or {}
    unknown = sorted(set(words) - set(labels))
    if unknown:
        raise TuneoffError(f"label_words names labels the task does not have: {', '.join(unknown)}",
                           field="label_words", hint="labels: " + ", ".join(labels[:10]))
    return [str(words.get(label, label)) for label in labels]


def _open_run(store: Store, fingerprint: str, arm: PromptArm, ctx: TaskContext, backend: Backend, split: str,
              kind: str, experiment_id: int | None) -> tuple[int, set[int], float]:
    """(run id, items already done, wall seconds already spent): an interrupted run is picked up again."""
    row = store.find_run(fingerprint, statuses=("running", "failed"))
    if row is not None:
        store.reopen_run(row["id"])
        return row["id"], store.done_items(row["id"]), _time_spent(store, row)
    run_id = store.start_run(kind, arm=arm.name, task=ctx.name, split=split, model=backend.info.name,
                             spec=arm.to_dict(), fingerprint=fingerprint, experiment_id=experiment_id)
    return run_id, set(), 0.0


def _time_spent(store: Store, row) -> float:
    """Wall seconds an interrupted attempt spent: what it recorded when it failed, or, for a process
    killed before it could record anything, the span from the run's start to its last stored call."""
    summary = json.loads(row["summary_json"] or "{}")
    if "wall_seconds" in summary:  # absent when the process was killed before it could write one
        return EvalSummary.from_dict(summary).wall_seconds
    calls = store.calls(row["id"])
    return max(0.0, calls[-1]["created_at"] - row["started_at"]) if calls else 0.0


@contextmanager
def _progress(console, total: int, label: str) -> Iterator:
    if console is None or total == 0:
        yield lambda n: None
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def evaluate(backend: Backend, arm: PromptArm, examples: Sequence[Example], task, *, store: Store | None = None,
             split: str = "test", kind: str = "eval", chunk_size: int | None = None, console=None,
             experiment_id: int | None = None) -> EvalResult:
    """Run `arm` over `examples` with `backend`; store every call, prediction and metric.

    task: a `TaskContext` or loaded `TaskData` (labels, metric, instruction, demo pool).
    store: the run store (default: a throwaway in-memory one).
    split: the split's name, for the store and the report.
    kind: the run kind in the store (`eval`; the optimiser's candidate runs are `optimise`).
    chunk_size: items per backend call and per store write (default: the backend's batch size).
    console: a rich Console to draw a progress bar on; None draws nothing.
    """
    with evaluation(backend, arm, examples, task, store=store, split=split, kind=kind, chunk_size=chunk_size,
                    console=console, experiment_id=experiment_id) as session:
        with _progress(console, len(session.examples) - len(session.done), f"{arm.name} [{split}]") as advance:
            session.score(len(session.examples), advance)
        return session.finish()


@contextmanager
def evaluation(backend: Backend, arm: PromptArm, examples: Sequence[Example], task, *, store: Store | None = None,
               split: str = "test", kind: str = "eval", chunk_size: int | None = None, console=None,
               experiment_id: int | None = None) -> Iterator[EvalSession]:
    """An evaluation run over `examples`, opened (or resumed) and held while the caller scores it in
    pieces: `session.score(k)` scores the first k items, `session.finish()` closes the run on the items
    scored so far. Adaptive evaluation scores several arms' sessions in turns; `evaluate` scores one
    whole. Arguments as for `evaluate`. Leaving the block unfinished (an error) marks the run failed,
    with what it scored kept for a resume."""
    ctx = TaskContext.of(task)
    examples = list(examples)
    if not examples:
        raise TuneoffError("no examples to evaluate", field="split", hint="check the task's split sizes")
    # template mistakes surface here, before any call; `auto` arms write completion text for base models
    prompter = prepare(arm, ctx, sample=examples[0], chat_model=backend.info.chat)
    store = store or Store(":memory:")
    fingerprint = run_fingerprint(backend, arm, examples, ctx, split, kind)
    # one process per identical evaluation: a second one waits, then answers from the first's calls
    # (two at once used to share the run and write every call twice)
    waiting = console.print if console is not None else None
    with hold(store.lock_path(f"eval-{fingerprint[:32]}"), "running the same evaluation", wait=True, waiting=waiting):
        session = EvalSession(backend, prompter, examples, store, fingerprint, split, kind, chunk_size, console,
                              experiment_id)
        try:
            yield session
        except BaseException:
            if not session.finished:  # interrupted or failed: keep what is done, and its time, for the resume
                store.finish_run(session.run_id, "failed", EvalSummary(session.earlier + session.seconds).to_dict())
            raise


class EvalSession:
    """One evaluation run, open: items are scored in order of their index, any number at a time."""

    def __init__(self, backend: Backend, prompter: Prompter, examples: list[Example], store: Store, fingerprint: str,
                 split: str, kind: str, chunk_size: int | None, console, experiment_id: int | None):
        self.backend, self.arm, self.ctx, self.examples = backend, prompter.arm, prompter.ctx, examples
        self.store, self.split, self.console = store, split, console
        self.run_id, self.done, self.earlier = _open_run(store, fingerprint, self.arm, self.ctx, backend, split, kind,
                                                         experiment_id)
        self.resumed = len(self.done)
        """Items an interrupted earlier attempt had already finished."""
        self.seconds = 0.0
        """Wall time this session spent scoring (an adaptive evaluation's other arms' turns excluded)."""
        self.finished = False
        self.runner = ChunkRunner(backend, prompter, store, self.run_id)
        self.warnings = label_warnings(backend, self.runner) if self.arm.mode == "score" else []
        if (fallback := free_text_warning(self.ctx.metric, self.ctx.labels)) is not None:
            self.warnings.append(fallback)
        if self.arm.mode == "generate" and not self.ctx.labels:
            self.warnings += reference_warnings(backend, examples, self.runner.config.max_new_tokens)
        for warning in self.warnings if console is not None else ():
            console.print(f"[yellow]{self.arm.name}: {warning}[/yellow]")
        self.size = chunk_size or getattr(backend, "batch_size", 16)

    def score(self, upto: int, advance: Callable[[int], object] = lambda n: None) -> None:
        """Score every item before index `upto` not scored yet, a backend batch at a time."""
        todo = [i for i in range(min(upto, len(self.examples))) if i not in self.done]
        began = time.perf_counter()
        try:
            for start in range(0, len(todo), self.size):
                chunk = todo[start:start + self.size]
                self.runner.run([(i, self.examples[i]) for i in chunk])
                self.done.update(chunk)
                advance(len(chunk))
        finally:
            self.seconds += time.perf_counter() - began

    def scores(self) -> list[float]:
        """Each scored item's own score (`correct`), in item order (adaptive evaluation scores a prefix)."""
        return [float(r["correct"] or 0.0) for r in self.store.predictions(self.run_id)]

    def finish(self) -> EvalResult:
        """Close the run on the items scored so far: metrics, summary, the result."""
        backend, arm, ctx, store, run_id, runner = self.backend, self.arm, self.ctx, self.store, self.run_id, self.runner
        wall = self.earlier + self.seconds
        if runner.over_context and self.console is not None:
            ids = ", ".join(runner.over_context[:5]) + (" ..." if len(runner.over_context) > 5 else "")
            self.console.print(f"[yellow]warning: {len(runner.over_context)} prompt(s) of {arm.name} are longer than "
                               f"the model's context ({backend.context_length} tokens) and were scored anyway: "
                               f"{ids}[/yellow]")
        metrics = summarise(store, run_id, ctx, wall_seconds=wall)
        store.finish_run(run_id, "done", EvalSummary(wall, runner.hits, runner.misses, self.resumed,
                                                     MainMetric(ctx.metric, metrics[ctx.metric].value).to_dict(),
                                                     self.warnings, ran_on=ran_on(backend)).to_dict())
        self.finished = True
        predictions = [{**dict(r), "extra": json.loads(r["extra_json"])} for r in store.predictions(run_id)]
        return EvalResult(run_id, arm, self.split, metrics, predictions, runner.hits, runner.misses, self.resumed,
                          self.seconds, self.warnings)


def label_warnings(backend: Backend, runner: ChunkRunner) -> list[str]:
    """Label words that scoring cannot judge fairly (see `calibration.check_label_words`)."""
    ids = label_token_ids(backend, runner.words)
    return check_label_words(ids) if ids else []
