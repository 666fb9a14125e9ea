"""`/v1/completions` takes every prompt form of OpenAI's spec (text, texts, token ids, lists of token ids),
and lm-eval's `local-completions` client works against `tuneoff serve` with its default token-id payloads.

    OMP_NUM_THREADS=1 python -m pytest -q tests/test_serve_prompt_forms.py
"""

from __future__ import annotations

import httpx
import pytest
import torch

from tuneoff.models import GenerationConfig, load_backend
from tuneoff.serve import ServedArm, ServeOptions, ServerThread, build

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["the movie was great", "a dull film", "what a waste of time"]


def serving(model: str):
    app, _ = build(ServedArm("bare", model), ServeOptions())
    return ServerThread(app)


def complete(server, **body):
    r = httpx.post(server.url + "/completions", json={"model": "bare", **body}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def test_the_four_prompt_forms_give_the_same_answers(sharp_model_dir):
    local = load_backend(str(sharp_model_dir))
    ids = [local.encode(t) for t in TEXTS]
    expected = [c.text for c in local.generate_ids(ids, GenerationConfig(max_new_tokens=4))]
    with serving(str(sharp_model_dir)) as server:
        forms = {"text": [complete(server, prompt=t, max_tokens=4, temperature=0) for t in TEXTS],
                 "ids": [complete(server, prompt=i, max_tokens=4, temperature=0) for i in ids],
                 "texts": [complete(server, prompt=TEXTS, max_tokens=4, temperature=0)],
                 "lists of ids": [complete(server, prompt=ids, max_tokens=4, temperature=0)]}
        echoed = complete(server, prompt=ids[0], max_tokens=2, temperature=0, echo=True)
        bad = {"empty ids": httpx.post(server.url + "/completions", json={"model": "bare", "prompt": [[]]}),
               "past the vocabulary": httpx.post(server.url + "/completions",
                                                 json={"model": "bare", "prompt": [10 ** 6]}),
               "mixed": httpx.post(server.url + "/completions", json={"model": "bare", "prompt": [[1, 2], "a"]})}
    for name, answers in forms.items():
        assert [c["text"] for a in answers for c in a["choices"]] == expected, name
    assert forms["lists of ids"][0]["usage"]["prompt_tokens"] == sum(len(i) for i in ids)
    assert echoed["choices"][0]["text"].startswith(local.tokenizer.decode(ids[0]))
    for name, r in bad.items():
        assert r.status_code == 400 and r.json()["error"]["param"] == "prompt", (name, r.text)


def test_lm_eval_local_completions_payloads(sharp_model_dir):
    """The exact bodies lm-eval's `local-completions` (lm_eval/models/openai_completions.py) sends with its
    default `tokenized_requests=True`, parsed as its `parse_logprobs` / `parse_generations` parse them."""
    local = load_backend(str(sharp_model_dir))
    contexts = [local.encode(t) for t in TEXTS]
    continuations = [local.encode(" positive"), local.encode(" negative"), local.encode(" the answer is 42")]
    requests = [c + k for c, k in zip(contexts, continuations)]
    with serving(str(sharp_model_dir)) as server:
        scored = complete(server, prompt=requests, temperature=0, max_tokens=1, logprobs=1, seed=1234, echo=True)
        generated = complete(server, prompt=contexts, max_tokens=8, temperature=0,
                             stop=["\n\n", "<|endoftext|>"], seed=1234)
    for choice, context, request in zip(sorted(scored["choices"], key=lambda c: c["index"]), contexts, requests):
        lp = choice["logprobs"]
        # lm-eval: sum(token_logprobs[ctxlen:-1]); greedy when each token is its position's best
        got = sum(lp["token_logprobs"][len(context):-1])
        greedy = all(t == max(top.values()) for t, top in zip(lp["token_logprobs"][len(context):-1],
                                                                lp["top_logprobs"][len(context):-1]))
        with torch.no_grad():
            logits = local.model(torch.tensor([request])).logits[0].float().log_softmax(-1)
        want = [logits[t - 1, request[t]] for t in range(len(context), len(request))]
        assert got == pytest.approx(float(sum(want)), abs=1e-3)
        assert greedy == all(logits[t - 1].argmax() == request[t] for t in range(len(context), len(request)))
    expected = local.generate_ids(contexts, GenerationConfig(max_new_tokens=8, stop=("\n\n", "<|endoftext|>")))
    texts = [None] * len(contexts)
    for c in generated["choices"]:
        texts[c["index"]] = c["text"]
    assert texts == [e.text for e in expected]
