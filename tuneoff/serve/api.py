"""The OpenAI-shaped side of `tuneoff serve`, shared by the app (`app.py`) and its request handling
(`routes.py`): what a request may ask for (`Limits`), the request bodies (pydantic), OpenAI's error body,
ids and server-sent events."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Literal, Optional, Union

from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from ..models.base import GenerationConfig


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
