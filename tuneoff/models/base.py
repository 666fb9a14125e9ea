"""The backend interface every model sits behind: local transformers today, any OpenAI-compatible
server tomorrow. It is deliberately small: render chat, generate a batch, score continuations,
count tokens. Timing and token counts come back with every call so the store can keep them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, Union, runtime_checkable

Message = dict  # {"role": "system"|"user"|"assistant", "content": str}
Chat = Sequence[Message]
Prompt = Union[Chat, str]
"""What a backend is sent: chat messages (rendered through the model's chat template), or text that a
model continues as it is (a completion prompt, `tuneoff.models.chat.CompletionFormat`)."""


@dataclass(frozen=True)
class GenerationConfig:
    """How to decode. Greedy unless `temperature` > 0."""

    max_new_tokens: int = 64
    """Upper bound on generated tokens per request."""
    temperature: float = 0.0
    """0 means greedy decoding; above 0 samples."""
    top_p: float = 1.0
    """Nucleus sampling mass, used only when sampling."""
    seed: int | None = None
    """Seed for sampling, so a sampled run can be repeated."""
    stop: tuple[str, ...] = ()
    """Strings that end a completion; the returned text is cut before the first one."""
    json_schema: str | None = None
    """A JSON Schema (canonical JSON text) the reply must satisfy: local models decode under it
    (`models.constrained`), served ones get it as `response_format`. None: free decoding."""

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens: must be >= 1")
        if self.temperature < 0:
            raise ValueError("temperature: must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p: must be in (0, 1]")
        object.__setattr__(self, "stop", tuple(self.stop))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class Completion:
    """One generated answer with what it cost."""

    text: str
    tokens_in: int
    tokens_out: int
    seconds: float
    """Wall time of the call that served this request (the whole batch: what the caller waited)."""
    batch_size: int = 1
    finish_reason: str = "stop"
    """"stop" (end of sequence or a stop string) or "length" (hit max_new_tokens)."""

    def call_fields(self) -> dict:
        """The store's `calls` columns this completion fills (`Store.add_call(..., **c.call_fields())`)."""
        return {"output": self.text, "tokens_in": self.tokens_in, "tokens_out": self.tokens_out,
                "latency_s": self.seconds, "batch_size": self.batch_size, "finish_reason": self.finish_reason}


NO_SCORE = -1e9
"""The log-probability a backend gives a continuation it could not score (a server without logprobs whose
reply matched no label). An item whose continuations all have it is a format violation."""


@dataclass(frozen=True)
class Score:
    """Log-likelihood of one continuation given a prompt."""

    logprob: float
    """Sum of log-probabilities of the continuation's tokens."""
    tokens: int
    """Number of continuation tokens (for length-normalised scores)."""
    tokens_in: int = 0
    seconds: float = 0.0


@dataclass
class BackendInfo:
    """What a backend tells the store and the report about itself."""

    name: str
    """The model spec it was loaded from, e.g. `embedded:smollm2-135m-instruct`."""
    kind: str = "local"
    """The registry kind that built it (`tuneoff.models.registry`)."""
    dtype: str = "float32"
    device: str = "cpu"
    parameters: int = 0
    extra: dict = field(default_factory=dict)
    engine: str = "transformers"
    """What serves a single interactive request (`generate_one`, `tuneoff ask`): `transformers`,
    `llamacpp`, or whatever another backend names its server."""
    batch_engine: str = "transformers"
    """What serves batched generation (evaluations). Another engine gives other answers, so `llamacpp`
    here is part of the model's cache key (`tuneoff.evaluate.engine.model_id`)."""
    decode: str = "eager"
    """How transformers decodes (`tuneoff.models.decode`): `eager`, or `compiled` (static cache, compiled
    step), whose bf16 answers can differ from eager's at near-ties, so it is part of the cache key."""
    chat: bool = True
    """A chat model (it has a chat template and is not marked as a base model). Prompts in format `auto`
    go to a chat model as messages and to a base model as completion text (`tuneoff.models.chat`)."""


@runtime_checkable
class Backend(Protocol):
    info: BackendInfo
    """Name, precision, device, and which engine serves generation (`engine_of`)."""

    def render(self, messages: Prompt, add_generation_prompt: bool = True) -> str:
        """The exact prompt text the model sees for these messages (its chat template); text as it is."""

    def generate(self, chats: Sequence[Prompt], config: GenerationConfig) -> list[Completion]:
        """One completion per prompt (chat or text), in order. Implementations batch as they see fit."""

    def loglikelihood(self, chats: Sequence[Prompt], continuations: Sequence[str]) -> list[Score]:
        """Score `continuations[i]` as the assistant's reply to `chats[i]` (or the continuation of its text)."""

    def count_tokens(self, text: str) -> int:
        """Tokens in `text` under this model's tokenizer."""


def engine_of(backend: Backend, batched: bool = False) -> str:
    """The engine that serves a backend's generation: batched (evaluations) or a single request.
    Declared in `BackendInfo`, so a backend says it once at construction and callers need not guess."""
    return backend.info.batch_engine if batched else backend.info.engine
