"""The HTTP side of `tuneoff serve`: OpenAI's `/v1/models`, `/v1/chat/completions` and `/v1/completions`.

Every client mistake gets a 4xx with OpenAI's error body (`{"error": {"message", "type", "param",
"code"}}`): malformed JSON, a missing field, a value out of range, an unknown model, a body over the size
limit, `max_tokens` over the limit or past the model's context. A 500 means a bug here.
"""

from __future__ import annotations

import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .api import PROMPT_FORMS, ApiError, ChatRequest, CompletionRequest, Limits, error_response
from .arms import RequestError, ServedArm
from .routes import BodyLimit, Handler
from .worker import Worker


def create_app(backend, arm: ServedArm, limits: Limits = Limits(), api_key: str | None = None,
               worker: Worker | None = None) -> FastAPI:
    """The FastAPI app serving `arm` on `backend` (a `TransformersBackend`)."""
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
