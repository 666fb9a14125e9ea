"""The OpenAI-compatible backend against a tiny real HTTP server on loopback that answers from a script:
retries on 429/5xx (honouring Retry-After), no retry on other 4xx, usage read back, label scoring through
logprobs or through a generated reply, the key read from its environment variable and never stored.

    OMP_NUM_THREADS=1 python -m pytest -q tests/test_openai_backend.py
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tuneoff.errors import TuneoffError
from tuneoff.models import GenerationConfig, ModelSpec, load_backend
from tuneoff.models.base import NO_SCORE
from tuneoff.models.openai import ServerError, ServerOptions, match_label

CHAT = [{"role": "user", "content": "is this good?"}]


def answer(text: str = "positive", logprobs: dict | None = None, usage=(7, 1)) -> dict:
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    if logprobs is not None:
        first = max(logprobs, key=logprobs.get)
        choice["logprobs"] = {"content": [{"token": first, "logprob": logprobs[first],
                                           "top_logprobs": [{"token": t, "logprob": v} for t, v in logprobs.items()]}]}
    return {"id": "x", "object": "chat.completion", "choices": [choice],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}}


class Scripted:
    """A loopback HTTP server answering each POST with the next (status, headers, body) of a script."""

    def __init__(self, script: list[tuple[int, dict, dict]]):
        self.script, self.requests, self.times = list(script), [], []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self._reply(200, {}, {"object": "list", "data": [{"id": "served-model", "object": "model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((dict(self.headers), body))
                outer.times.append(time.perf_counter())
                status, headers, reply = outer.script.pop(0) if outer.script else (200, {}, answer())
                self._reply(status, headers, reply)

            def _reply(self, status, headers, reply):
                data = json.dumps(reply).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_429_then_200_is_retried_after_the_servers_retry_after():
    busy = {"error": {"message": "slow down", "type": "rate_limit_error"}}
    with Scripted([(429, {"Retry-After": "0.3"}, busy), (200, {}, answer("hello", usage=(11, 3)))]) as server:
        backend = load_backend(f"{server.url}?model=m&backoff=0.01")
        [c] = backend.generate([CHAT], GenerationConfig(max_new_tokens=4))
    assert len(server.requests) == 2
    assert server.times[1] - server.times[0] >= 0.29  # Retry-After wins over the 10 ms backoff
    assert (c.text, c.tokens_in, c.tokens_out) == ("hello", 11, 3)
    body = server.requests[0][1]
    assert body["model"] == "m" and body["messages"] == CHAT and body["max_tokens"] == 4 and body["temperature"] == 0


def test_5xx_backs_off_exponentially_and_gives_up_after_the_retries():
    failing = [(503, {}, {"error": {"message": "overloaded"}})] * 3
    with Scripted(failing) as server:
        backend = load_backend(f"{server.url}?model=m&retries=2&backoff=0.05")
        with pytest.raises(ServerError, match="HTTP 503: overloaded"):
            backend.generate([CHAT], GenerationConfig())
    assert len(server.requests) == 3
    gaps = [b - a for a, b in zip(server.times, server.times[1:])]
    assert gaps[0] >= 0.05 * 0.5 and gaps[1] >= 0.1 * 0.5  # 0.05 then 0.1 s, each times a jitter in [0.5, 1.5)


def test_a_400_is_not_retried_and_its_message_reaches_the_user():
    with Scripted([(400, {}, {"error": {"message": "max_tokens is too large"}})]) as server:
        backend = load_backend(f"{server.url}?model=m")
        with pytest.raises(ServerError, match="max_tokens is too large"):
            backend.generate([CHAT], GenerationConfig())
    assert len(server.requests) == 1


def test_a_timeout_is_retried():
    import httpx

    class SlowOnce(httpx.BaseTransport):
        def __init__(self):
            self.calls = 0

        def handle_request(self, request):
            self.calls += 1
            if self.calls == 1:
                raise httpx.ReadTimeout("slow", request=request)
            return httpx.Response(200, json=answer("late"))

    from tuneoff.models.openai import OpenAICompatBackend

    transport = SlowOnce()
    backend = OpenAICompatBackend(ServerOptions("http://127.0.0.1:9/v1", "m", backoff_s=0.01),
                                  client=httpx.Client(transport=transport))
    assert backend.generate([CHAT], GenerationConfig())[0].text == "late" and transport.calls == 2


def test_api_key_comes_from_the_named_variable_and_not_the_spec(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-secret")
    with Scripted([]) as server:
        backend = load_backend(f"{server.url}?model=m&api_key_env=MY_KEY")
        backend.generate([CHAT], GenerationConfig())
    assert server.requests[0][0]["Authorization"] == "Bearer sk-secret"
    assert "sk-secret" not in backend.info.name + json.dumps(backend.info.extra)
    monkeypatch.delenv("MY_KEY")
    with pytest.raises(TuneoffError, match="MY_KEY is not set"):
        backend.generate([CHAT], GenerationConfig())


def test_model_name_defaults_to_the_first_the_server_lists_and_options_are_checked():
    with Scripted([]) as server:
        assert load_backend(server.url).options.model == "served-model"
    assert ModelSpec("openai:gpt-4o-mini").kind == "openai" and ModelSpec("http://h/v1?model=x").kind == "openai"
    assert ServerOptions.parse("openai:gpt-4o-mini").api_key_env == "OPENAI_API_KEY"
    with pytest.raises(TuneoffError, match="unknown option"):
        ServerOptions.parse("http://h/v1?model=x&concurency=3")
    with pytest.raises(TuneoffError, match="concurrency"):
        ServerOptions.parse("http://h/v1?model=x&concurrency=0")


def test_labels_are_scored_from_top_logprobs():
    top = {"pos": -0.2, " negative": -1.9, "x": -3.0}
    with Scripted([(200, {}, answer("pos", logprobs=top))]) as server:
        backend = load_backend(f"{server.url}?model=m")
        pos, neg, other = backend.loglikelihood([CHAT] * 3, ["positive", "negative", "neutral"])
    assert (pos.logprob, neg.logprob, other.logprob) == (-0.2, -1.9, NO_SCORE)
    assert len(server.requests) == 1  # one request serves every label of a chat
    assert server.requests[0][1]["logprobs"] is True and server.requests[0][1]["top_logprobs"] == 20
    assert backend.scoring.via_logprobs == 1


def test_without_logprobs_the_reply_is_matched_and_failures_are_counted():
    # a server that ignores `logprobs`: the backend asks for the answer instead, from then on
    with Scripted([(200, {}, answer("Negative.")), (200, {}, answer("Negative.")), (200, {}, answer("no idea"))]) as server:
        backend = load_backend(f"{server.url}?model=m&concurrency=1")
        first = backend.loglikelihood([CHAT] * 2, ["positive", "negative"])
        second = backend.loglikelihood([CHAT] * 2, ["positive", "negative"])
    assert [s.logprob for s in first] == [NO_SCORE, 0.0] and [s.logprob for s in second] == [NO_SCORE, NO_SCORE]
    assert "logprobs" not in server.requests[2][1]  # learnt: no more logprob requests
    assert (backend.scoring.via_generation, backend.scoring.unmatched) == (2, 1)
    assert match_label("positive, clearly", ["positive", "negative"]) == "positive"


def test_concurrency_keeps_order():
    script = [(200, {}, answer(f"reply {i}")) for i in range(6)]
    with Scripted(script) as server:
        backend = load_backend(f"{server.url}?model=m&concurrency=3")
        out = backend.generate([[{"role": "user", "content": str(i)}] for i in range(6)], GenerationConfig())
    sent = {r[1]["messages"][0]["content"]: i for i, r in enumerate(server.requests)}
    assert [c.text for c in out] == [f"reply {sent[str(i)]}" for i in range(6)]


def test_an_evaluation_over_http_is_cached_in_the_store_like_a_local_one(tmp_path):
    from tuneoff.data import Example
    from tuneoff.evaluate import evaluate
    from tuneoff.prompting import PromptArm, TaskContext
    from tuneoff.store import Store

    items = [Example(input=f"review {i}", target="positive", id=str(i)) for i in range(5)]
    ctx = TaskContext(name="toy", labels=("negative", "positive"))
    arm = PromptArm(name="zero", mode="generate", max_new_tokens=3)
    store = Store(tmp_path / "runs.sqlite")
    with Scripted([(200, {}, answer("positive", usage=(9, 1)))] * 5) as server:
        first = evaluate(load_backend(f"{server.url}?model=m&concurrency=2"), arm, items, ctx, store=store)
        sent = len(server.requests)
        again = evaluate(load_backend(f"{server.url}?model=m"), arm, items, ctx, store=store)
    assert sent == 5 and len(server.requests) == 5  # the second evaluation sent nothing
    assert (first.cache_misses, again.cache_hits) == (5, 5) and again.main.value == first.main.value == 1.0
    assert [c["tokens_in"] for c in store.calls(first.run_id)] == [9] * 5  # from the response's usage


def test_a_json_schema_is_sent_as_response_format():
    schema = {"type": "object", "properties": {"topic": {"type": "string"}}, "required": ["topic"]}
    with Scripted([(200, {}, answer('{"topic": "x"}'))]) as server:
        backend = load_backend(f"{server.url}?model=m")
        out = backend.generate([CHAT], GenerationConfig(json_schema=json.dumps(schema)))
    assert out[0].text == '{"topic": "x"}'
    sent = server.requests[0][1]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["schema"] == schema
