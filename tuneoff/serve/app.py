"""The HTTP side of `tuneoff serve`: OpenAI's `/v1/models`, `/v1/chat/completions` and `/v1/completions`.

Every client mistake gets a 4xx with OpenAI's error body (`{"error": {"message", "type", "param",
"code"}}`): malformed JSON, a missing field, a value out of range, an unknown model, a body over the size
limit, `max_tokens` over the limit or past the model's context. A 500 means a bug here.
"""

from __future__ import annotations

import json
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal, Optional, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..models.base import GenerationConfig
from .arms import RequestError, ServedArm
from .worker import Worker


@dataclass(frozen=True)
class Limits:
    """What one request may ask for."""

    max_tokens: int = 512
    """Largest `max_tokens` a request may ask for."""
    max_request_bytes: int = 1_000_000
    """Largest request body."""
    max_top_logprobs: int = 20


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, self.param, self.code, self.type)


def error_response(status: int, message: str, param=None, code=None, type="invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type, "param": param, "code": code}}, status_code=status)


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[TextPart]]

    def plain(self) -> dict:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class StreamOptions(BaseModel):
    include_usage: bool = False


class Sampling(BaseModel):
    """Fields both endpoints share."""

    model: str
    max_tokens: Optional[int] = Field(None, ge=1)
    temperature: Optional[float] = Field(None, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1, le=1)
    stop: Union[str, list[str], None] = None
    seed: Optional[int] = None
    stream: bool = False
    stream_options: Optional[StreamOptions] = None


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: Optional[int] = Field(None, ge=0, le=20)


PROMPT_FORMS = "a string, a list of strings, a list of token ids or a list of lists of token ids"


class CompletionRequest(Sampling):
    # every form OpenAI's spec allows, as vLLM takes them: text, texts, token ids, lists of token ids
    # (lm-eval's `local-completions` sends token ids unless told `tokenized_requests=False`)
    prompt: Union[str, list[str], list[int], list[list[int]]] = Field(min_length=1)
    logprobs: Optional[int] = Field(None, ge=0, le=5)
    echo: bool = False


def create_app(backend, arm: ServedArm, limits: Limits = Limits(), api_key: str | None = None,
               worker: Worker | None = None) -> FastAPI:
    """The FastAPI app serving `arm` on `backend` (a `TransformersBackend`)."""
    from .routes import BodyLimit, Handler

    end_of_turn = arm.prompter.arm.score_end_of_turn if arm.prompter else True
    worker = worker or Worker(backend, arm.labels, end_of_turn)

    @asynccontextmanager
    async def lifespan(app):
        yield
        worker.close()

    app = FastAPI(title=f"tuneoff serve: {arm.name}", docs_url=None, redoc_url=None, lifespan=lifespan)
    handler = Handler(backend, arm, limits, worker)
    app.state.worker = worker
    _install_errors(app)
    app.add_middleware(BodyLimit, limit=limits.max_request_bytes)

    @app.middleware("http")
    async def check_key(request: Request, call_next):
        if api_key is not None and request.headers.get("authorization") != f"Bearer {api_key}":
            return error_response(401, "missing or wrong API key (Authorization: Bearer KEY)", None,
                                  "invalid_api_key", "authentication_error")
        return await call_next(request)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": arm.name, "object": "model", "created": int(time.time()),
                                            "owned_by": "tuneoff"}]}

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest):
        return await handler.chat(body)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest):
        return await handler.complete(body)

    return app


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request, exc: ApiError):
        return exc.response()

    @app.exception_handler(RequestError)
    async def request_error(request, exc: RequestError):
        return error_response(400, str(exc), exc.param)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ())[1:]) or None
        message = first.get("msg", "invalid request")
        if first.get("type") == "json_invalid":
            message, where = "the body is not valid JSON", None
        elif where and where.split(".")[0] == "prompt":  # pydantic names a union's last member tried: say all
            message, where = PROMPT_FORMS, "prompt"
        return error_response(400, f"{where + ': ' if where else ''}{message}", where)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc: StarletteHTTPException):
        return error_response(exc.status_code, str(exc.detail), None, None)

    @app.exception_handler(Exception)
    async def bug(request, exc: Exception):  # pragma: no cover - a bug, still answered in the API's shape
        return error_response(500, f"internal error: {type(exc).__name__}", None, None, "server_error")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


def stream_response(chunks) -> StreamingResponse:
    return StreamingResponse(chunks, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def config_of(body: Sampling, max_tokens: int, temperature: float) -> GenerationConfig:
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    return GenerationConfig(max_new_tokens=max_tokens, temperature=temperature, top_p=body.top_p,
                            seed=body.seed, stop=tuple(s for s in stops if s))
