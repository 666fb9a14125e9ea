"""Server abuse (issue 13, item 7): `tuneoff serve` under 200 concurrent requests answers no 5xx;
wrong types, bad JSON, huge and negative `max_tokens`, oversized bodies, unknown models and missing or
wrong keys get a 4xx with OpenAI's error body; the default bind is loopback."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tuneoff.serve import Limits, ServedArm, ServeOptions, ServerThread, build


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def serving(model_dir, **options):
    app, _ = build(ServedArm("bare", str(model_dir)), ServeOptions(**options))
    return ServerThread(app)


def test_200_concurrent_requests_get_no_5xx(tiny_model_dir):
    body = {"model": "bare", "messages": [{"role": "user", "content": "the movie was great"}], "max_tokens": 2}
    with serving(tiny_model_dir) as server, httpx.Client(timeout=120) as client:
        def one(i: int) -> int:
            wrong = i % 5 == 0  # every fifth request is a client mistake, mixed into the load
            payload = {**body, "max_tokens": "ten"} if wrong else {**body, "temperature": 0}
            return client.post(server.url + "/chat/completions", json=payload).status_code

        with ThreadPoolExecutor(32) as pool:
            codes = list(pool.map(one, range(200)))
    assert len(codes) == 200 and not [c for c in codes if c >= 500]
    assert codes.count(200) == 160 and all(400 <= codes[i] < 500 for i in range(0, 200, 5))


@pytest.mark.parametrize("payload", [
    {"model": "bare", "messages": "hello"},
    {"model": "bare", "messages": [{"role": "user", "content": 42}]},
    {"model": "bare", "messages": [{"role": "user"}]},
    {"model": "bare", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**12},
    {"model": "bare", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0},
    {"model": "bare", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"},
    {"model": "bare", "messages": [{"role": "user", "content": "hi"}], "top_p": -1},
    {"model": "bare", "messages": [{"role": "user", "content": "hi"}], "stop": [1, 2]},
    {"model": 7, "messages": [{"role": "user", "content": "hi"}]},
    [1, 2, 3],
])
def test_wrong_types_and_ranges_get_4xx_with_an_error_body(tiny_model_dir, payload):
    with serving(tiny_model_dir, limits=Limits(max_tokens=64)) as server:
        r = httpx.post(server.url + "/chat/completions", json=payload, timeout=60)
    assert 400 <= r.status_code < 500, (payload, r.status_code, r.text)
    assert set(r.json()["error"]) >= {"message", "type", "param", "code"}


def test_missing_or_wrong_key_is_refused_and_the_default_bind_is_loopback(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("REL_KEY", "secret")
    body = {"model": "bare", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    with serving(tiny_model_dir, api_key_env="REL_KEY") as server:
        missing = httpx.post(server.url + "/chat/completions", json=body, timeout=60)
        wrong = httpx.post(server.url + "/chat/completions", json=body, timeout=60,
                           headers={"Authorization": "Bearer nope"})
        right = httpx.post(server.url + "/chat/completions", json=body, timeout=60,
                           headers={"Authorization": "Bearer secret"})
    assert missing.status_code == wrong.status_code == 401 and right.status_code == 200
    assert "error" in missing.json() and "secret" not in missing.text
    assert ServeOptions().host == "127.0.0.1"
