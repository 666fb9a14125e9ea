"""The one thread that touches the model: requests queue here and leave in micro-batches.

Why one thread: a CPU forward pass already uses every core, so two at once only slow each other down,
while one batched forward serves many rows per weight read. Requests that arrive within `window_s` of
each other with the same decoding settings go to the backend as one batch (`generate_ids`, left-padded,
the same path an evaluation takes, so a served greedy answer equals the evaluated one). Label scoring
batches the same way. Streaming and log-probability requests run alone: they need the model token by
token. With a llama.cpp engine attached (`tuneoff serve --gguf`, a fine-tune's export), a generate request
that finds no company within the window goes to llama.cpp: single requests are where it is fastest.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable

from ..models.base import Completion, GenerationConfig


STOP = object()
"""Queued by `close`: the worker finishes what came before it and ends."""


class JobKind(str, Enum):
    """What a request asks of the model."""

    GENERATE = "generate"
    SCORE = "score"
    """The likeliest of the arm's labels (a score-mode arm)."""
    LOGPROBS = "logprobs"
    """Generation with each token's log-probability."""
    PROMPT = "prompt"
    """The prompt's own token log-probabilities (`echo` on /v1/completions)."""
    STREAM = "stream"

    @property
    def batches(self) -> bool:
        """Whether requests of this kind share a forward pass (a stream runs alone, token by token)."""
        return self is not JobKind.STREAM


@dataclass
class Job:
    """One request's work and where its answer goes."""

    kind: JobKind
    ids: list[int]
    """The prompt's token ids."""
    config: GenerationConfig
    done: Callable[[object], None]
    """Called (from the worker thread) with the result or the exception."""
    chat: list | None = None
    """The chat (score jobs: scored against the arm's labels)."""
    top_logprobs: int = 0
    on_text: Callable[[str], None] | None = None
    """Stream jobs: called with each new piece of text."""
    queued_at: float = field(default_factory=time.perf_counter)

    def __post_init__(self):
        self.kind = JobKind(self.kind)


class Worker:
    """Runs jobs on a `TransformersBackend` in one background thread, batching compatible ones."""

    def __init__(self, backend, labels: list[str] | None = None, score_end_of_turn: bool = True,
                 window_s: float = 0.01, max_batch: int = 32):
        self.backend, self.labels, self.end_of_turn = backend, list(labels or ()), score_end_of_turn
        self.window_s, self.max_batch = window_s, max_batch
        self.jobs: queue.Queue = queue.Queue()
        self.waiting: list[Job] = []  # taken from the queue while batching but not batchable with it
        self.batches: list[int] = []  # sizes of the batches run, for tests and the benchmark
        self.thread = threading.Thread(target=self._loop, name="tuneoff-serve-worker", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> None:
        self.jobs.put(job)

    def close(self) -> None:
        self.jobs.put(STOP)
        self.thread.join(timeout=30)

    async def run(self, kind: JobKind | str, ids: list[int], config: GenerationConfig, **extra):
        """Queue a job from the event loop and await its result."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def done(result):
            loop.call_soon_threadsafe(_settle, future, result)

        self.submit(Job(kind, ids, config, done, **extra))
        return await future

    # -- the thread ------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            job = self.waiting.pop(0) if self.waiting else self.jobs.get()
            if job is STOP:
                return
            batch = [job]
            if job.kind.batches:
                batch += self._gather(job)
            self._run_or_split(batch)

    def _run_or_split(self, batch: list[Job]) -> None:
        """Run a batch; when it fails, run its jobs one by one, so one bad request fails alone (and never
        the worker)."""
        try:
            self._run(batch)
        except Exception as e:
            if len(batch) == 1:
                batch[0].done(e)
                return
            for job in batch:
                self._run_or_split([job])

    def _gather(self, first: Job) -> list[Job]:
        """More jobs like `first` that arrive within the batching window (or were already queued);
        others wait their turn, in order."""
        more, deadline = [], time.perf_counter() + self.window_s
        while len(more) + 1 < self.max_batch:
            try:
                job = self.jobs.get(timeout=max(deadline - time.perf_counter(), 0.0001))
            except queue.Empty:
                break
            if job is not STOP and (job.kind, job.config, job.top_logprobs) == (first.kind, first.config,
                                                                                 first.top_logprobs):
                more.append(job)
            else:
                self.waiting.append(job)
                if job is STOP:
                    break
        return more

    def _run(self, batch: list[Job]) -> None:
        self.batches.append(len(batch))
        first, ids = batch[0], [j.ids for j in batch]
        runs = {
            JobKind.GENERATE: lambda: self._generate(ids, first.config),
            JobKind.SCORE: lambda: self._score(batch),
            JobKind.PROMPT: lambda: prompt_logprobs(self.backend, ids, first.top_logprobs),
            JobKind.STREAM: lambda: [stream_generate(self.backend, first.ids, first.config, first.on_text)],
            JobKind.LOGPROBS: lambda: logprob_generate(self.backend, ids, first.config, first.top_logprobs),
        }
        for job, result in zip(batch, runs[first.kind]()):
            job.done(result)

    def _generate(self, ids: list[list[int]], config: GenerationConfig) -> list[Completion]:
        if len(ids) == 1 and getattr(self.backend, "generator", None) is not None:
            # a lone request: latency is what counts, and llama.cpp decodes one sequence fastest
            return self.backend.generator.generate(ids, config)
        return self.backend.generate_ids(ids, config)

    def _score(self, batch: list[Job]) -> list[Completion]:
        from ..evaluate.scoring import score_labels

        began = time.perf_counter()
        scores = score_labels(self.backend, [j.chat for j in batch], self.labels, self.end_of_turn)
        seconds = time.perf_counter() - began
        return [Completion(s.best(self.labels, "mean"), s.tokens_in, 0, seconds, len(batch)) for s in scores]


def _settle(future: asyncio.Future, result) -> None:
    if future.done():  # the client went away and the request was cancelled
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def _generate_kwargs(backend, ids: list[int], config: GenerationConfig) -> dict:
    import torch

    tokenizer = backend.tokenizer
    from ..models.local import sampling_kwargs

    kwargs = dict(input_ids=torch.tensor([ids], device=backend.device), max_new_tokens=config.max_new_tokens,
                  pad_token_id=tokenizer.pad_token_id, **sampling_kwargs(config))
    kwargs["attention_mask"] = torch.ones_like(kwargs["input_ids"])
    return kwargs


def stream_generate(backend, ids: list[int], config: GenerationConfig, on_text: Callable[[str], None]) -> Completion:
    """Generate one prompt, handing text to `on_text` as it is decoded; stop strings end it early."""
    from transformers import TextStreamer

    from ..models.local import GeneratedTextStop

    sent: list[str] = []
    hold = max((len(s) for s in config.stop), default=0)  # text that may still turn out to open a stop string

    class Pieces(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            sent.append(text)
            full = _cut("".join(sent), config.stop)
            already = getattr(self, "given", 0)
            upto = len(full) if stream_end or len(full) < len("".join(sent)) else max(already, len(full) - hold)
            if upto > already:
                on_text(full[already:upto])
                self.given = upto

    streamer = Pieces(backend.tokenizer, skip_prompt=True, skip_special_tokens=True)
    kwargs = _generate_kwargs(backend, ids, config)
    if config.stop:
        kwargs["stopping_criteria"] = [GeneratedTextStop(backend.tokenizer, config.stop, len(ids))]
    began = time.perf_counter()
    out = backend.run_generate(kwargs.pop("input_ids"), kwargs.pop("attention_mask"), streamer=streamer, **kwargs)
    new = out[0, len(ids):].tolist()
    text = _cut("".join(sent), config.stop)
    finish = "length" if len(new) >= config.max_new_tokens and not any(s in "".join(sent) for s in config.stop) \
        else "stop"
    return Completion(text, len(ids), len(new), time.perf_counter() - began, 1, finish)


def logprob_generate(backend, prompts: list[list[int]], config: GenerationConfig,
                     top: int) -> list[tuple[Completion, list[dict]]]:
    """Generation (one left-padded batch) that also returns, per generated token, its log-probability and
    the `top` likeliest alternatives (OpenAI's `logprobs.content` entries); stop strings end a row."""
    import torch

    from ..models.scoring import left_pad

    tokenizer = backend.tokenizer
    kwargs = _generate_kwargs(backend, prompts[0], config)
    del kwargs["input_ids"], kwargs["attention_mask"]
    input_ids, mask = left_pad(prompts, tokenizer.pad_token_id, backend.device)
    began = time.perf_counter()
    out = backend.run_generate(input_ids, mask, output_logits=True, return_dict_in_generate=True, **kwargs)
    seconds, width = time.perf_counter() - began, input_ids.shape[1]
    eos = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    results = []
    for row, ids in enumerate(prompts):
        content, new = [], out.sequences[row, width:].tolist()
        for step, token in enumerate(new):
            if token in eos:
                break
            content.append(_entry(tokenizer, token, torch.log_softmax(out.logits[step][row].float(), dim=-1), top))
        text = tokenizer.decode(new[:len(content)], skip_special_tokens=True)
        finish = "length" if len(content) >= config.max_new_tokens else "stop"
        cut = _cut(text, config.stop)
        if len(cut) < len(text):  # a stop string: keep the tokens that end before it
            finish, kept = "stop", 0
            while kept < len(content) and len(tokenizer.decode(new[:kept + 1], skip_special_tokens=True)) <= len(cut):
                kept += 1
            content, text = content[:kept], cut
        results.append((Completion(text, len(ids), len(content), seconds, len(prompts), finish), content))
    return results


def prompt_logprobs(backend, prompts: list[list[int]], top: int) -> list[tuple[list[dict], dict]]:
    """Per prompt (one left-padded forward for the batch): each token's log-probability given the tokens
    before it (the first has none), and the greedy next token's entry. `echo` with `logprobs` is how a
    client scores a continuation exactly; with `max_tokens` 1 the next token needs no second pass."""
    import torch

    from ..models.scoring import left_pad

    ids, mask = left_pad(prompts, backend.tokenizer.pad_token_id, backend.device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        logits = backend.model(input_ids=ids, attention_mask=mask, position_ids=positions).logits.float()
    out = []
    for row, prompt in enumerate(prompts):
        logprobs = torch.log_softmax(logits[row, ids.shape[1] - len(prompt):], dim=-1)
        first = {"token": _piece(backend.tokenizer, prompt[0]), "logprob": None, "top_logprobs": None}
        # logits at position t predict token t + 1
        entries = [first] + [_entry(backend.tokenizer, prompt[t + 1], logprobs[t], top) for t in range(len(prompt) - 1)]
        following = _entry(backend.tokenizer, int(logprobs[-1].argmax()), logprobs[-1], top)
        out.append((entries, following))
    return out


def _entry(tokenizer, token: int, logprobs, top: int) -> dict:
    values, indices = logprobs.topk(top) if top else (logprobs[:0], logprobs[:0].long())
    return {"token": _piece(tokenizer, token), "logprob": logprobs[token].item(),
            "bytes": list(_piece(tokenizer, token).encode()),
            "top_logprobs": [{"token": _piece(tokenizer, i), "logprob": v, "bytes": list(_piece(tokenizer, i).encode())}
                             for v, i in zip(values.tolist(), indices.tolist())]}


def _piece(tokenizer, token: int) -> str:
    return tokenizer.decode([token], skip_special_tokens=False)


def _cut(text: str, stops: tuple[str, ...]) -> str:
    cut = min((text.find(s) for s in stops if s and s in text), default=-1)
    return text[:cut] if cut >= 0 else text
