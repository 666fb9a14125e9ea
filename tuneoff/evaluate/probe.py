"""The serving probe: an arm's requests timed the way a user of a deployed arm meets them.

An evaluation sends a whole split in batches, and every item's stored latency is the wall time of
the batch it rode in: seconds for a prompt a single request answers in a fraction of that. The
probe measures what serving costs instead, on the same weights and prompting as the evaluation:

1. one request at a time (`generate_one` where the backend has it, e.g. llama.cpp; a one-item
   `score_labels` for label scoring): the latency a user waits, p50/p95;
2. `concurrency` requests together, as a server micro-batches concurrent requests: each request's
   latency is its micro-batch's wall time, and the throughput (requests/s) gives the machine time
   per request that hardware-mode cost charges.

Each request's time includes choosing its demos and writing its prompt. One untimed request goes
first: a server answers warm. Calls are stored under the probe run with probe-only cache keys, so an
evaluation never reuses a probe answer (a llama.cpp reply is not a transformers one).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..data import Example, digest
from ..errors import TuneoffError
from ..models.base import Backend, GenerationConfig, engine_of
from ..prompting.arm import PromptArm, TaskContext, generation_cap
from ..prompting.strategies import Prompter, prepare
from ..records import ProbeSummary
from ..store import Store
from .calibration import calibrate, reference_chats
from .engine import constrained_schema, label_words, model_id
from .scoring import argmax_label, normed, score_labels


@dataclass
class Answer:
    """One request's reply, kept until the timer has stopped (store writes are not serving time)."""

    prompt: str
    output: str
    tokens_in: int
    tokens_out: int


class Server:
    """What answering one arm's requests takes: demos, the prompt, the model call, and for a calibrated
    arm its reference prompts (remembered across requests, as a server would)."""

    def __init__(self, backend: Backend, prompter: Prompter):
        self.backend, self.prompter, self.arm = backend, prompter, prompter.arm
        self.references: dict[str, list[float]] = {}
        if self.arm.mode == "score":
            self.labels = list(prompter.ctx.labels or ())
            self.words = label_words(self.arm, self.labels)
        else:
            sampled = self.arm.temperature > 0
            cap = generation_cap(self.arm, prompter.ctx, backend.count_tokens)  # the evaluation's cap
            self.config = GenerationConfig(max_new_tokens=cap, temperature=self.arm.temperature,
                                           seed=self.arm.seed if sampled else None, stop=tuple(self.arm.stop),
                                           json_schema=constrained_schema(self.arm, prompter.ctx))

    def answer(self, examples: Sequence[Example]) -> list[Answer]:
        """Requests that arrived together, answered together (one alone: the single-request path)."""
        demos = [self.prompter.demos(ex) for ex in examples]
        chats = [self.prompter.messages(ex, d) for ex, d in zip(examples, demos)]
        prompts = [self.backend.render(c) for c in chats]
        if self.arm.mode != "score":
            one = getattr(self.backend, "generate_one", None)
            replies = [one(chats[0], self.config)] if one and len(chats) == 1 else \
                self.backend.generate(chats, self.config)
            return [Answer(p, r.text, r.tokens_in, r.tokens_out) for p, r in zip(prompts, replies)]
        scores = score_labels(self.backend, chats, self.words, self.arm.score_end_of_turn)
        outputs = [s.best(self.labels, self.arm.score_norm) for s in scores]
        if self.arm.calibration != "none":
            outputs = self._calibrated(examples, demos, scores)
        return [Answer(p, o, s.tokens_in, 0) for p, o, s in zip(prompts, outputs, scores)]

    def _calibrated(self, examples, demos, scores) -> list[str]:
        method, refs = self.arm.calibration, []
        for ex, d in zip(examples, demos):
            chats = reference_chats(self.prompter, ex, d, method)
            prompts = [self.backend.render(c) for c in chats]
            todo = {p: c for p, c in zip(prompts, chats) if p not in self.references}
            for p, s in zip(todo, score_labels(self.backend, list(todo.values()), self.words,
                                               self.arm.score_end_of_turn)):
                self.references[p] = s.normed(self.arm.score_norm)
            refs.append([self.references[p] for p in prompts])
        return [argmax_label(self.labels, calibrate(s.normed(self.arm.score_norm), r, method))
                for s, r in zip(scores, refs)]


def probe_fingerprint(backend: Backend, arm: PromptArm, items: Sequence[Example], ctx: TaskContext,
                      concurrency: int) -> str:
    """Same fingerprint = same measurement: a rerun of an experiment reuses its stored probe."""
    blob = json.dumps({"model": model_id(backend), "engine": engine_of(backend), "arm": arm.to_dict(),
                       "items": digest(items), "pool": digest(ctx.pool), "labels": ctx.labels,
                       "instruction": ctx.instruction, "concurrency": concurrency, "kind": "probe"},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def probe(backend: Backend, arm: PromptArm, items: Sequence[Example], task, *, concurrency: int = 8,
          store: Store | None = None, experiment_id: int | None = None) -> tuple[int, ProbeSummary, bool]:
    """Time `items` as serving requests, alone and `concurrency` at a time; store the run.

    task: a `TaskContext` or loaded `TaskData` (the arm's demo pool, labels, instruction).
    Returns (run id, summary, reused): a finished probe with the same fingerprint is reused.
    """
    items, ctx = list(items), TaskContext.of(task)
    if not items or concurrency < 1:
        raise TuneoffError("a probe needs at least one item and a concurrency >= 1", field="probe")
    store = store or Store(":memory:")
    fingerprint = probe_fingerprint(backend, arm, items, ctx, concurrency)
    done = store.find_run(fingerprint, statuses=("done",))
    if done is not None:
        return done["id"], ProbeSummary.from_json(done["summary_json"]), True
    server = Server(backend, prepare(arm, ctx, sample=items[0]))
    run_id = store.start_run("probe", arm=arm.name, task=ctx.name, split="test", model=backend.info.name,
                             spec={**arm.to_dict(), "probe": {"items": len(items), "concurrency": concurrency}},
                             fingerprint=fingerprint, experiment_id=experiment_id)
    server.answer(items[:1])  # warm-up, untimed
    single = [_timed(server, [ex], store, run_id, "single") for ex in items]
    batched = [_timed(server, items[i:i + concurrency], store, run_id, "batched")
               for i in range(0, len(items), concurrency)]
    # scoring has one path (the backend's `loglikelihood`); generation names what served single requests
    engine = "label scoring" if arm.mode == "score" else engine_of(backend)
    summary = summarise_probe(single, batched, concurrency, engine, tokens_in=_tokens_in(store, run_id))
    store.finish_run(run_id, "done", summary.to_dict())
    for name in ("single_p50", "single_p95", "batched_p50", "batched_p95", "throughput", "seconds_per_request"):
        store.set_metric(run_id, name, getattr(summary, name))
    return run_id, summary, False


def _timed(server: Server, batch: Sequence[Example], store: Store, run_id: int, mode: str) -> tuple[float, int]:
    """(wall seconds, requests) of one micro-batch; its calls are stored after the timer stops."""
    began = time.perf_counter()
    answers = server.answer(batch)
    seconds = time.perf_counter() - began
    for a in answers:
        # a probe-only key: the probe's answers never stand in for an evaluation's calls
        store.add_call(run_id=run_id, model=model_id(server.backend), prompt=a.prompt,
                       params={"probe": mode, "arm": server.arm.name}, output=a.output, tokens_in=a.tokens_in,
                       tokens_out=a.tokens_out, latency_s=seconds, batch_size=len(batch), finish_reason="probe")
    return seconds, len(batch)


def _tokens_in(store: Store, run_id: int) -> float:
    calls = store.calls(run_id)
    return float(np.mean([c["tokens_in"] for c in calls])) if calls else 0.0


def summarise_probe(single: list[tuple[float, int]], batched: list[tuple[float, int]], concurrency: int,
                    engine: str, tokens_in: float = 0.0) -> ProbeSummary:
    """The probe's figures from (wall seconds, requests) per call of each pass."""
    alone = [s for s, _ in single]
    together = [s for s, n in batched for _ in range(n)]  # each request waited for its whole micro-batch
    wall, n = sum(s for s, _ in batched), sum(n for _, n in batched)
    return ProbeSummary(items=len(alone), concurrency=concurrency, engine=engine,
                        single_p50=float(np.percentile(alone, 50)), single_p95=float(np.percentile(alone, 95)),
                        batched_p50=float(np.percentile(together, 50)),
                        batched_p95=float(np.percentile(together, 95)),
                        throughput=n / wall if wall > 0 else 0.0, seconds_per_request=wall / max(n, 1),
                        tokens_in_mean=tokens_in, single_seconds=alone, batched_seconds=together)
