"""A model behind any OpenAI-compatible HTTP server: a hosted API, vLLM, Ollama, llama.cpp's server, or
`tuneoff serve`. Registered as the `openai` backend kind (`tuneoff.models.registry`).

    openai:gpt-4o-mini                                   # OPENAI_BASE_URL or api.openai.com, key in OPENAI_API_KEY
    http://127.0.0.1:8000/v1?model=smollm2               # any server; the model name it serves
    http://127.0.0.1:8000/v1?model=m&api_key_env=MY_KEY&concurrency=8&timeout=30&retries=5

Options ride in the spec's query string so one string names the model everywhere (experiment `model:`,
`tuneoff ask -m`). The key is read from the named environment variable at each request and never kept
in the spec, the store or the report; only the base URL and the model name identify the model (the cache
key), since concurrency, timeouts and the key do not change an answer.

Label scoring (`loglikelihood`): with `template=SPEC` (a local tokenizer with the served model's chat
template) each label is scored exactly, like the local backend: the rendered prompt plus the label goes to
`/v1/completions` with `echo` and `logprobs`, and the label's tokens' log-probabilities are summed (vLLM
and `tuneoff serve` answer this). Without it, a server that returns `logprobs` gives each label the log-probability
of the best first token that starts it, among `top_logprobs`; one that does not (or whose likeliest
tokens start no label) is asked to answer (greedy) and the reply is matched to a label. A label that neither way reaches gets `NO_SCORE`, and an
item whose labels all have it counts as a format violation in the report (the failure rate).
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
import math
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from ..errors import MissingPackageError, TuneoffError
from .base import NO_SCORE, BackendInfo, Chat, Completion, GenerationConfig, Score

if TYPE_CHECKING:
    from .spec import ModelSpec

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUSES = {408, 409, 429, 500, 502, 503, 504}
"""Answers worth another try: rate limits, overload and gateway failures (and request timeouts)."""
TOP_LOGPROBS = 20
"""How many alternatives a scoring request asks for (OpenAI's maximum)."""


@dataclass(frozen=True)
class ServerOptions:
    """Where the server is and how to talk to it."""

    base_url: str
    """The API root, ending in `/v1` for most servers."""
    model: str
    """The model name sent in each request (`model` field); empty: the first one `/models` lists."""
    api_key_env: str | None = None
    """Environment variable holding the API key; None sends no Authorization header."""
    concurrency: int = 4
    """Requests in flight at once."""
    timeout_s: float = 60.0
    """Per-request timeout (seconds)."""
    retries: int = 4
    """Further tries after a 429, a 5xx or a timeout, with exponential backoff and jitter."""
    backoff_s: float = 0.5
    """First backoff; doubled per try, capped at `max_backoff_s`, times a random factor in [0.5, 1.5)."""
    max_backoff_s: float = 30.0
    template: str | None = None
    """A local model spec whose tokenizer renders chats exactly as the server does (its chat template):
    labels are then scored exactly, by `/v1/completions` with `echo` and `logprobs` (see the module)."""

    def __post_init__(self):
        for name in ("concurrency", "timeout_s"):
            if getattr(self, name) <= 0:
                raise TuneoffError("must be > 0", field=f"model.{name}")
        if self.retries < 0:
            raise TuneoffError("must be >= 0", field="model.retries")

    @classmethod
    def parse(cls, name: str) -> ServerOptions:
        """Options from a spec string (see the module docstring)."""
        parts = urlsplit(name)
        query = dict(parse_qsl(parts.query))
        known = {"model", "api_key_env", "concurrency", "timeout", "retries", "backoff", "template"}
        unknown = set(query) - known
        if unknown:
            raise TuneoffError(f"unknown option(s) {sorted(unknown)} in '{name}'", field="model",
                               hint="options: " + ", ".join(sorted(known)))
        if parts.scheme == "openai":
            base = os.environ.get("OPENAI_BASE_URL", DEFAULT_BASE_URL)
            model, key_env = parts.path, query.get("api_key_env", "OPENAI_API_KEY")
        else:
            base = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
            model, key_env = query.get("model", ""), query.get("api_key_env")
        try:
            return cls(base.rstrip("/"), model, key_env, int(query.get("concurrency", 4)),
                       float(query.get("timeout", 60)), int(query.get("retries", 4)), float(query.get("backoff", 0.5)),
                       template=query.get("template"))
        except ValueError as e:
            raise TuneoffError(f"bad option value in '{name}': {e}", field="model") from None

    @property
    def identity(self) -> str:
        """What names the model for the cache: the server, the model it serves, and whether labels are
        scored exactly (echo) or from the likeliest first tokens: they give different scores."""
        return f"{self.base_url}#{self.model}" + ("|echo" if self.template else "")


def load(spec: ModelSpec) -> OpenAICompatBackend:
    """The `openai` backend kind's factory."""
    return OpenAICompatBackend(ServerOptions.parse(spec.name), batch_size=spec.batch_size)


class ServerError(TuneoffError):
    """The server refused a request for good, or kept failing after every retry."""


@dataclass
class ScoringStats:
    """How label scoring went: counts the report's format-violation rate comes from."""

    via_logprobs: int = 0
    via_generation: int = 0
    unmatched: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, how: str, matched: bool) -> None:
        with self.lock:
            setattr(self, how, getattr(self, how) + 1)
            self.unmatched += not matched


class OpenAICompatBackend:
    """A `Backend` whose every call is an HTTP request to an OpenAI-compatible server."""

    def __init__(self, options: ServerOptions, batch_size: int = 16, client=None):
        """`client`: an `httpx.Client` to use (tests); default one made here with the options' timeout."""
        try:
            import httpx
        except ImportError:  # pragma: no cover - httpx is a dependency; a broken env is worth a clear message
            raise MissingPackageError("the openai backend needs httpx", hint="pip install httpx") from None
        self.options = options
        self.batch_size = batch_size
        self.client = client or httpx.Client(timeout=options.timeout_s)
        self.scoring = ScoringStats()
        self._logprobs_supported: bool | None = None  # learnt from the first scoring answer
        if not options.model:
            self.options = dataclasses.replace(options, model=self._first_model())
        if options.template:  # `replies()` finds it: labels are then closed the way the template closes a turn
            from .weights import load_tokenizer

            self.tokenizer = load_tokenizer(options.template)
        self.info = BackendInfo(name=self.options.identity, kind="openai", dtype="server", device="remote",
                                engine="http", batch_engine="http", extra={"base_url": options.base_url})

    # -- HTTP ------------------------------------------------------------------------------------
    def _headers(self) -> dict:
        if not self.options.api_key_env:
            return {}
        key = os.environ.get(self.options.api_key_env)
        if not key:
            raise TuneoffError(f"environment variable {self.options.api_key_env} is not set", field="model.api_key_env",
                               hint=f"export {self.options.api_key_env}=... (the key is never written to the store)")
        return {"Authorization": f"Bearer {key}"}

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        """One API call with retries on 429/5xx/timeouts; the JSON answer."""
        import httpx

        url = self.options.base_url + path
        for attempt in range(self.options.retries + 1):
            last = attempt == self.options.retries
            try:
                response = self.client.request(method, url, json=body, headers=self._headers())
            except (httpx.TimeoutException, httpx.TransportError) as e:
                if last:
                    raise ServerError(f"{method} {url}: {type(e).__name__} after {attempt + 1} tries",
                                      field="model", hint="is the server up? see `timeout` and `retries`") from None
                time.sleep(self._backoff(attempt, None))
                continue
            if response.status_code < 400:
                try:
                    return response.json()
                except ValueError:
                    raise ServerError(f"{method} {url}: the answer is not JSON: {response.text[:200]!r}",
                                      field="model", hint="is this an OpenAI-compatible API root (…/v1)?") from None
            if response.status_code not in RETRY_STATUSES or last:
                raise ServerError(f"{method} {url}: HTTP {response.status_code}: {_error_text(response)}",
                                  field="model")
            time.sleep(self._backoff(attempt, response.headers.get("retry-after")))
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        """Seconds to wait before try `attempt + 2`: the server's Retry-After when it gives one, else
        exponential backoff with jitter (many clients retrying in step would hit the server together)."""
        told = _retry_after_seconds(retry_after)
        if told is not None:
            return min(told, self.options.max_backoff_s)
        base = min(self.options.max_backoff_s, self.options.backoff_s * 2 ** attempt)
        return base * (0.5 + random.random())

    def _first_model(self) -> str:
        data = self.request("GET", "/models").get("data") or []
        if not data:
            raise TuneoffError(f"{self.options.base_url}/models lists no model", field="model",
                               hint="name one: ...?model=NAME")
        return data[0]["id"]

    def _map(self, fn, items: list) -> list:
        """`fn` over `items` with at most `concurrency` requests in flight, results in order."""
        if len(items) <= 1 or self.options.concurrency == 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=min(self.options.concurrency, len(items))) as pool:
            return list(pool.map(fn, items))

    # -- Backend ---------------------------------------------------------------------------------
    def render(self, messages: Chat, add_generation_prompt: bool = True) -> str:
        # the server applies its own chat template, unknown here: the messages themselves are the
        # prompt (and the cache key), written deterministically
        return json.dumps(list(messages), ensure_ascii=False, sort_keys=True)

    def count_tokens(self, text: str) -> int:
        if self.options.template:
            return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        # no tokenizer on this side: ~4 characters a token, used only where a response has no `usage`
        return max(1, math.ceil(len(text) / 4)) if text else 0

    def generate(self, chats: Sequence[Chat], config: GenerationConfig) -> list[Completion]:
        return self._map(lambda chat: self._chat(chat, config), list(chats))

    def _chat_body(self, chat: Chat, config: GenerationConfig, **extra) -> dict:
        body = {"model": self.options.model, "messages": list(chat), "max_tokens": config.max_new_tokens,
                "temperature": config.temperature, **extra}
        if not config.greedy:
            body["top_p"] = config.top_p
        if config.seed is not None:
            body["seed"] = config.seed
        if config.stop:
            body["stop"] = list(config.stop)[:4]  # the API takes at most four
        if config.json_schema is not None:
            # OpenAI's structured outputs; vLLM and llama.cpp's server take the same field
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "reply", "schema": json.loads(config.json_schema), "strict": True}}
        return body

    def _chat(self, chat: Chat, config: GenerationConfig) -> Completion:
        began = time.perf_counter()
        data = self.request("POST", "/chat/completions", self._chat_body(chat, config))
        seconds = time.perf_counter() - began
        choice = (data.get("choices") or [{}])[0]
        text = (choice.get("message") or {}).get("content") or ""
        usage = data.get("usage") or {}
        return Completion(text=text, seconds=seconds, batch_size=1,
                          tokens_in=usage.get("prompt_tokens", self.count_tokens(self.render(chat))),
                          tokens_out=usage.get("completion_tokens", self.count_tokens(text)),
                          finish_reason="length" if choice.get("finish_reason") == "length" else "stop")

    def loglikelihood(self, chats: Sequence[Chat], continuations: Sequence[str]) -> list[Score]:
        if self.options.template:
            pairs = list(zip(chats, continuations))
            chunks = [pairs[i:i + 16] for i in range(0, len(pairs), 16)]
            return [s for chunk in self._map(self._score_echo, chunks) for s in chunk]
        # one request per distinct chat serves all its continuations (the labels)
        groups: dict[str, list[int]] = {}
        for i, chat in enumerate(chats):
            groups.setdefault(self.render(chat), []).append(i)
        keys = list(groups)
        answers = self._map(lambda k: self._score_chat(json.loads(k), [continuations[i] for i in groups[k]]), keys)
        out: list[Score | None] = [None] * len(chats)
        for k, scores in zip(keys, answers):
            for i, s in zip(groups[k], scores):
                out[i] = s
        return out  # type: ignore[return-value]

    def _score_echo(self, pairs: list[tuple[Chat, str]]) -> list[Score]:
        """Exact continuation scores: the prompt rendered here with the server's template, the continuation
        appended, sent with `echo` so the server returns every token's log-probability."""
        prompts = [self.tokenizer.apply_chat_template(list(chat), tokenize=False, add_generation_prompt=True)
                   for chat, _ in pairs]
        texts = [p + c for p, (_, c) in zip(prompts, pairs)]
        began = time.perf_counter()
        # max_tokens 1, not 0: some servers refuse 0; the generated token starts past every continuation
        data = self.request("POST", "/completions", {"model": self.options.model, "prompt": texts, "max_tokens": 1,
                                                     "temperature": 0, "echo": True, "logprobs": 0})
        return _echo_scores(data, prompts, texts, time.perf_counter() - began)

    def _score_chat(self, chat: list, labels: list[str]) -> list[Score]:
        longest = max(self.count_tokens(x) for x in labels) + 2
        if self._logprobs_supported is not False:
            config = GenerationConfig(max_new_tokens=1)
            began = time.perf_counter()
            data = self.request("POST", "/chat/completions",
                                self._chat_body(chat, config, logprobs=True, top_logprobs=TOP_LOGPROBS))
            top = _first_top_logprobs(data)
            self._logprobs_supported = top is not None
            scores = [_label_logprob(label, top) for label in labels] if top is not None else []
            if any(s > NO_SCORE for s in scores):
                self.scoring.add("via_logprobs", True)
                tokens_in = (data.get("usage") or {}).get("prompt_tokens", 0)
                return [Score(s, 1, tokens_in, time.perf_counter() - began) for s in scores]
        # no logprobs from this server, or no label among the likeliest first tokens: ask for the answer
        # and match it to a label
        reply = self._chat(chat, GenerationConfig(max_new_tokens=longest))
        matched = match_label(reply.text, labels)
        self.scoring.add("via_generation", matched is not None)
        return [Score(0.0 if label == matched else NO_SCORE, 1, reply.tokens_in, reply.seconds) for label in labels]


def _echo_scores(data: dict, prompts: list[str], texts: list[str], seconds: float) -> list[Score]:
    """Sum of the log-probabilities of the tokens that start inside each continuation (prompt + continuation
    was sent with `echo`: the answer lists every prompt token with its offset and log-probability)."""
    out: list[Score | None] = [None] * len(texts)
    for choice in data.get("choices") or []:
        i, lp = choice.get("index", 0), choice.get("logprobs") or {}
        start, end = len(prompts[i]), len(texts[i])
        values = [v for v, o in zip(lp.get("token_logprobs") or [], lp.get("text_offset") or [])
                  if start <= o < end and v is not None]
        before = sum(o < start for o in lp.get("text_offset") or [])
        out[i] = Score(sum(values), len(values), before, seconds) if values else Score(NO_SCORE, 1, before, seconds)
    if any(s is None for s in out):
        raise ServerError("the server's echo answer misses prompts", field="model",
                          hint="drop `template=` to score from top_logprobs instead")
    return out  # type: ignore[return-value]


def _first_top_logprobs(data: dict) -> dict[str, float] | None:
    """token -> logprob of the first generated position's alternatives, or None without logprobs."""
    choice = (data.get("choices") or [{}])[0]
    content = (choice.get("logprobs") or {}).get("content") or []
    if not content:
        return None
    top: dict[str, float] = {}
    # two tokens may print the same (partial UTF-8 bytes both show as U+FFFD): keep the likelier
    for alt in [content[0], *(content[0].get("top_logprobs") or [])]:
        top[alt["token"]] = max(alt["logprob"], top.get(alt["token"], NO_SCORE))
    return top


def _label_logprob(label: str, top: dict[str, float]) -> float:
    """The log-probability of the likeliest listed first token that begins `label`."""
    want = label.strip().lower()
    fits = [lp for tok, lp in top.items() if tok.strip() and want.startswith(tok.strip().lower())]
    return max(fits, default=NO_SCORE)


def match_label(reply: str, labels: Sequence[str]) -> str | None:
    """The label a free reply gives: an exact match (any case), else the longest label the reply opens with."""
    text = reply.strip().strip(".!\"'").lower()
    for label in labels:
        if text == label.lower():
            return label
    opening = [label for label in labels if text.startswith(label.lower())]
    return max(opening, key=len) if opening else None


def _retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: either a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_text(response) -> str:
    """The message of an OpenAI-style error body, else the start of the body."""
    try:
        error = response.json().get("error")
        return error.get("message", str(error)) if isinstance(error, dict) else str(error)
    except (ValueError, AttributeError):
        return response.text[:300]
