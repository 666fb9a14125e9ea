"""Request handling behind the routes of `tuneoff.serve.app`: checks, the arm's prompting, the worker, the
OpenAI-shaped answers (whole or streamed as server-sent events)."""

from __future__ import annotations

import asyncio
import time

from ..models.base import Completion
from .api import (ApiError, ChatRequest, CompletionRequest, Limits, Sampling, config_of, error_response, new_id,
                  sse, stream_response)
from .arms import ServedArm
from .worker import JobKind, Worker

DONE = object()


class Handler:
    def __init__(self, backend, arm: ServedArm, limits: Limits, worker: Worker):
        self.backend, self.arm, self.limits, self.worker = backend, arm, limits, worker
        self.context = getattr(backend.model.config, "max_position_embeddings", None) or 1 << 30

    # -- checks ----------------------------------------------------------------------------------
    def _check(self, body: Sampling, ids: list[int], max_tokens: int | None) -> tuple[int, float]:
        if body.model != self.arm.name:
            raise ApiError(404, f"the model '{body.model}' does not exist here; this server serves '{self.arm.name}'",
                           "model", "model_not_found")
        max_tokens = max_tokens or min(self.arm.default_max_tokens(), self.limits.max_tokens)
        if max_tokens > self.limits.max_tokens:
            raise ApiError(400, f"max_tokens is {max_tokens}; this server allows at most {self.limits.max_tokens}",
                           "max_tokens", "max_tokens_exceeded")
        if len(ids) + max_tokens > self.context:
            raise ApiError(400, f"the prompt ({len(ids)} tokens) plus max_tokens ({max_tokens}) exceeds the model's "
                           f"context of {self.context} tokens", "messages", "context_length_exceeded")
        temperature = body.temperature if body.temperature is not None else self.arm.default_temperature()
        return max_tokens, temperature

    def _encode_chat(self, messages: list[dict]) -> tuple[list[dict], list[int]]:
        chat = self.arm.messages(messages)
        return chat, self.backend.encode(self.backend.render(chat))

    # -- /v1/chat/completions --------------------------------------------------------------------
    async def chat(self, body: ChatRequest):
        chat, ids = self._encode_chat([m.plain() for m in body.messages])
        max_tokens, temperature = self._check(body, ids, body.max_completion_tokens or body.max_tokens)
        config = config_of(body, max_tokens, temperature)
        rid, created = new_id("chatcmpl"), int(time.time())
        head = {"id": rid, "created": created, "model": self.arm.name}
        logprobs = None
        if self.arm.mode == "score":
            result = await self.worker.run(JobKind.SCORE, ids, config, chat=chat)
        elif body.logprobs:
            result, logprobs = await self.worker.run(JobKind.LOGPROBS, ids, config, top_logprobs=body.top_logprobs or 0)
        elif body.stream and not self._extracts():
            return stream_response(self._chat_stream(head, ids, config, body))
        else:
            result = await self.worker.run(JobKind.GENERATE, ids, config)
        text = self.arm.answer(result.text)
        if body.stream:  # answers known only whole (scored, extracted) go out as one chunk
            return stream_response(_whole_chat_stream(head, text, result, body))
        choice = {"index": 0, "message": {"role": "assistant", "content": text},
                  "logprobs": {"content": logprobs} if logprobs is not None else None,
                  "finish_reason": result.finish_reason if result.finish_reason in ("stop", "length") else "stop"}
        return {**head, "object": "chat.completion", "choices": [choice], "usage": _usage(result)}

    def _extracts(self) -> bool:
        return self.arm.prompter is not None and self.arm.prompter.arm.chain_of_thought

    async def _chat_stream(self, head: dict, ids: list[int], config, body: ChatRequest):
        chunk = {**head, "object": "chat.completion.chunk"}
        yield sse({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                         "finish_reason": None}]})
        async for piece in self._pieces(ids, config):
            if isinstance(piece, BaseException):
                yield sse({"error": {"message": str(piece), "type": "server_error", "param": None, "code": None}})
                return
            if isinstance(piece, Completion):
                yield sse({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": piece.finish_reason}]})
                if body.stream_options and body.stream_options.include_usage:
                    yield sse({**chunk, "choices": [], "usage": _usage(piece)})
                break
            yield sse({**chunk, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
        yield sse("[DONE]")

    async def _pieces(self, ids: list[int], config):
        """Text pieces as the worker decodes them, then the finished Completion (or the exception)."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue = asyncio.Queue()

        def on_text(text: str) -> None:
            loop.call_soon_threadsafe(pieces.put_nowait, text)

        task = asyncio.ensure_future(self.worker.run(JobKind.STREAM, ids, config, on_text=on_text))
        task.add_done_callback(lambda t: pieces.put_nowait(DONE))
        while True:
            piece = await pieces.get()
            if piece is DONE:
                break
            yield piece
        while not pieces.empty():  # text that landed after the end marker
            piece = pieces.get_nowait()
            if piece is not DONE:
                yield piece
        yield task.exception() or task.result()

    # -- /v1/completions -------------------------------------------------------------------------
    async def complete(self, body: CompletionRequest):
        prompts = self._prompts(body.prompt)
        if body.stream and len(prompts) > 1:
            raise ApiError(400, "streaming takes a single prompt", "prompt")
        encoded = [self._encode_prompt(p) for p in prompts]
        prompts = [p if isinstance(p, str) else self.backend.tokenizer.decode(p) for p in prompts]  # echo's text
        checked = [self._check(body, ids, body.max_tokens or 16) for _, ids in encoded]
        config = config_of(body, *checked[0])
        rid, created = new_id("cmpl"), int(time.time())
        head = {"id": rid, "object": "text_completion", "created": created, "model": self.arm.name}
        if body.echo and body.logprobs is not None:  # prompt scoring: the prompt's own tokens come first
            results = await asyncio.gather(*(self._echo(chat, ids, config, body.logprobs) for chat, ids in encoded))
        else:
            results = await asyncio.gather(*(self._one(chat, ids, config, body.logprobs) for chat, ids in encoded))
        choices = []
        for i, (prompt, (result, logprobs)) in enumerate(zip(prompts, results)):
            text = (prompt if body.echo else "") + self.arm.answer(result.text)
            choices.append({"index": i, "text": text, "logprobs": logprobs,
                            "finish_reason": result.finish_reason if result.finish_reason == "length" else "stop"})
        total = Completion("", sum(r.tokens_in for r, _ in results), sum(r.tokens_out for r, _ in results), 0.0)
        if body.stream:
            return stream_response(_whole_completion_stream(head, choices[0], total, body))
        return {**head, "choices": choices, "usage": _usage(total)}

    def _prompts(self, prompt) -> list[str | list[int]]:
        """The request's prompts, each a text or a list of token ids (the four forms of the spec)."""
        if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)):
            prompt = [prompt]
        if not prompt or any(len(p) == 0 for p in prompt):
            raise ApiError(400, "prompt: give at least one prompt, none of them empty", "prompt")
        vocab = len(self.backend.tokenizer)
        for p in prompt:
            if not isinstance(p, str) and not all(0 <= t < vocab for t in p):
                raise ApiError(400, f"prompt: token ids must lie in [0, {vocab})", "prompt")
        return prompt

    def _encode_prompt(self, prompt: str | list[int]) -> tuple[list[dict] | None, list[int]]:
        if self.arm.prompter is None:  # a bare model continues the raw text, or takes the ids as they are
            return None, self.backend.encode(prompt) if isinstance(prompt, str) else list(prompt)
        # an arm wraps the user's text: token ids are the text they decode to
        text = prompt if isinstance(prompt, str) else self.backend.tokenizer.decode(prompt)
        return self._encode_chat([{"role": "user", "content": text}])

    async def _echo(self, chat, ids: list[int], config, logprobs: int):
        """A completion with the prompt's token log-probabilities first. One greedy token (how clients ask
        for prompt scores) comes from the same forward pass; anything longer is generated as usual."""
        entries, following = await self.worker.run(JobKind.PROMPT, ids, config, top_logprobs=logprobs)
        if config.greedy and config.max_new_tokens == 1 and self.arm.mode != "score":
            result, generated = Completion(following["token"], len(ids), 1, 0.0, 1, "length"), _legacy_logprobs([following])
        else:
            result, generated = await self._one(chat, ids, config, logprobs)
        return result, _echo_logprobs(self.backend.tokenizer, ids, entries, generated)

    async def _one(self, chat, ids: list[int], config, logprobs: int | None):
        if self.arm.mode == "score" and chat is not None:
            return await self.worker.run(JobKind.SCORE, ids, config, chat=chat), None
        if logprobs is not None:
            result, content = await self.worker.run(JobKind.LOGPROBS, ids, config, top_logprobs=logprobs)
            return result, _legacy_logprobs(content)
        return await self.worker.run(JobKind.GENERATE, ids, config), None


def _usage(c: Completion) -> dict:
    return {"prompt_tokens": c.tokens_in, "completion_tokens": c.tokens_out, "total_tokens": c.tokens_in + c.tokens_out}


async def _whole_chat_stream(head: dict, text: str, result: Completion, body: ChatRequest):
    chunk = {**head, "object": "chat.completion.chunk"}
    yield sse({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": text},
                                     "finish_reason": None}]})
    yield sse({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": result.finish_reason
                                     if result.finish_reason == "length" else "stop"}]})
    if body.stream_options and body.stream_options.include_usage:
        yield sse({**chunk, "choices": [], "usage": _usage(result)})
    yield sse("[DONE]")


async def _whole_completion_stream(head: dict, choice: dict, total: Completion, body: CompletionRequest):
    yield sse({**head, "choices": [{**choice, "finish_reason": None}]})
    yield sse({**head, "choices": [{**choice, "text": "", "finish_reason": choice["finish_reason"]}]})
    if body.stream_options and body.stream_options.include_usage:
        yield sse({**head, "choices": [], "usage": _usage(total)})
    yield sse("[DONE]")


def _legacy_logprobs(content: list[dict], start: int = 0) -> dict:
    """`/v1/completions`' logprobs shape from the chat shape; offsets count from `start`."""
    offsets, at = [], start
    for c in content:
        offsets.append(at)
        at += len(c["token"])
    return {"tokens": [c["token"] for c in content], "token_logprobs": [c["logprob"] for c in content],
            "top_logprobs": [None if c["top_logprobs"] is None else {t["token"]: t["logprob"] for t in c["top_logprobs"]}
                             for c in content], "text_offset": offsets}


def _echo_logprobs(tokenizer, ids: list[int], prompt: list[dict], generated: dict | None) -> dict:
    """The prompt's tokens then the generated ones. Offsets are where each token starts in the decoded
    prompt (decoding prefixes, not pieces: a piece of a multi-byte character prints as U+FFFD)."""
    out = _legacy_logprobs(prompt)
    out["text_offset"] = [len(tokenizer.decode(ids[:i])) for i in range(len(ids))]
    if generated:
        start = len(tokenizer.decode(ids))
        for k in ("tokens", "token_logprobs", "top_logprobs"):
            out[k] = out[k] + generated[k]
        out["text_offset"] = out["text_offset"] + [start + o for o in generated["text_offset"]]
    return out


class BodyLimit:
    """ASGI middleware: a body over `limit` bytes gets a 413, whether it declares its length or not
    (the body is read here, up to the limit, then handed on)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = error_response(413, f"the request body is over {self.limit} bytes", None, "request_too_large")
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await too_large(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                return await too_large(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()  # later reads wait for the disconnect, as usual
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)
