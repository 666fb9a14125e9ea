"""`tuneoff serve` over real loopback HTTP: the official `openai` client for a prompt arm and a LoRA arm
(streamed and not), tuneoff's own OpenAI-compatible backend giving the same greedy predictions as the
same arm run locally, micro-batching, and every client mistake answered with a 4xx in OpenAI's shape.

    OMP_NUM_THREADS=1 python -m pytest -q tests/test_serve.py
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tuneoff.data import Example
from tuneoff.evaluate import evaluate
from tuneoff.models import ModelSpec, load_backend
from tuneoff.models.base import NO_SCORE
from tuneoff.prompting import TaskContext, prepare
from tuneoff.prompting.arm import PromptArm
from tuneoff.serve import Limits, ServedArm, ServeOptions, ServerThread, arm_from_files, build, is_loopback
from tuneoff.store import Store

INPUTS = ["the movie was great", "a dull film", "what a waste of time", "card payment refund", "the answer is 42",
          "wonderful acting", "boring", "a helpful assistant"]
DEMOS = [{"input": "great movie", "target": "positive"}, {"input": "dull and boring", "target": "negative"}]


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def few_shot(**kw) -> PromptArm:
    return PromptArm(name="few-shot", system="You are terse.", instruction="Classify.", shots=2, demos=DEMOS,
                     max_new_tokens=6, **kw)


def task(labels=("negative", "positive")) -> TaskContext:
    return TaskContext(name="toy", labels=labels, instruction="Classify.")


def serving(model: str, arm: ServedArm | None = None, **options):
    app, _ = build(arm or ServedArm("bare", model), ServeOptions(**options))
    return ServerThread(app)


def chat(client, model, text, **kw):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}], temperature=0,
                                          **kw)


def test_official_client_on_a_prompt_arm_streamed_and_not(sharp_model_dir):
    prompter = prepare(few_shot(), task())
    arm = ServedArm("few-shot", str(sharp_model_dir), prompter)
    local = load_backend(str(sharp_model_dir))
    with serving(str(sharp_model_dir), arm) as server:
        client = openai.OpenAI(base_url=server.url, api_key="unused")
        assert [m.id for m in client.models.list()] == ["few-shot"]
        for text in INPUTS[:3]:
            whole = chat(client, "few-shot", text, max_tokens=6)
            pieces = list(chat(client, "few-shot", text, max_tokens=6, stream=True,
                               stream_options={"include_usage": True}))
            streamed = "".join(c.choices[0].delta.content or "" for c in pieces if c.choices)
            # the arm's persona and demos were put around the user's message, as in an evaluation
            expected = local.generate([prompter.messages(Example(input=text, target=""))],
                                      _config(6))[0]
            assert whole.choices[0].message.content == streamed == expected.text
            assert whole.usage.prompt_tokens == expected.tokens_in and pieces[-1].usage.completion_tokens == \
                whole.usage.completion_tokens


def _config(n):
    from tuneoff.models import GenerationConfig

    return GenerationConfig(max_new_tokens=n)


def test_official_client_on_a_lora_arm(tiny_model_dir, tmp_path):
    from tuneoff.config.task import TaskData, TaskSpec
    from tuneoff.config.specs import from_dict
    from tuneoff.finetune import FinetuneArm, run_finetune

    train = [Example(input=x, target="positive" if i % 2 else "negative", id=str(i)) for i, x in enumerate(INPUTS)]
    data = TaskData(spec=TaskSpec(name="toy", train="t.jsonl"), train=train, dev=train[:2], test=train[:2],
                    labels=["negative", "positive"])
    arm = from_dict(FinetuneArm, dict(name="lora", method="lora", epochs=1, batch_size=4, learning_rate=5e-2,
                                      max_length=64))
    adapter = run_finetune(data, arm, str(tiny_model_dir), tmp_path / "lora", Store(tmp_path / "s.sqlite")).output_dir
    assert (adapter / "adapter_config.json").exists()
    local = load_backend(str(adapter))
    with serving(str(adapter), ServedArm("lora", str(adapter))) as server:
        client = openai.OpenAI(base_url=server.url, api_key="unused")
        whole = chat(client, "lora", "a dull film", max_tokens=5)
        streamed = "".join(c.choices[0].delta.content or "" for c in chat(client, "lora", "a dull film", max_tokens=5,
                                                                             stream=True) if c.choices)
    expected = local.generate([[{"role": "user", "content": "a dull film"}]], _config(5))[0].text
    assert whole.choices[0].message.content == streamed == expected


def test_openai_backend_on_tuneoff_serve_gives_the_local_greedy_predictions(sharp_model_dir):
    """The same prompt arm, evaluated locally and through HTTP against `tuneoff serve` of the same model."""
    arm = few_shot(mode="generate")
    items = [Example(input=x, target="positive", id=str(i)) for i, x in enumerate(INPUTS)]
    local = evaluate(load_backend(str(sharp_model_dir)), arm, items, task())
    with serving(str(sharp_model_dir), ServedArm("sharp", str(sharp_model_dir))) as server:
        remote_backend = load_backend(f"{server.url}?model=sharp&concurrency=4")
        remote = evaluate(remote_backend, arm, items, task())
        worker_batches = server.server.config.app.state.worker.batches
    assert [p["output"] for p in remote.predictions] == [p["output"] for p in local.predictions]
    assert [p["prediction"] for p in remote.predictions] == [p["prediction"] for p in local.predictions]
    assert len({p["output"] for p in local.predictions}) > 3  # not one answer for all: the check has teeth
    assert max(worker_batches) > 1  # concurrent requests were micro-batched


def test_a_served_score_arm_answers_the_label_the_evaluation_predicts(sharp_model_dir):
    arm = few_shot(mode="score")
    items = [Example(input=x, target="positive", id=str(i)) for i, x in enumerate(INPUTS[:4])]
    local = evaluate(load_backend(str(sharp_model_dir)), arm, items, task())
    served = ServedArm("scored", str(sharp_model_dir), prepare(arm, task()))
    with serving(str(sharp_model_dir), served) as server:
        client = openai.OpenAI(base_url=server.url, api_key="unused")
        with ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda x: chat(client, "scored", x).choices[0].message.content, INPUTS[:4]))
    assert replies == [p["prediction"] for p in local.predictions]


def test_logprobs_from_the_server_score_labels_through_the_backend(sharp_model_dir):
    with serving(str(sharp_model_dir)) as server:
        client = openai.OpenAI(base_url=server.url, api_key="unused")
        r = chat(client, "bare", "great", max_tokens=2, logprobs=True, top_logprobs=20)
        first = r.choices[0].logprobs.content[0]
        assert len(first.top_logprobs) == 20 and first.logprob == pytest.approx(first.top_logprobs[0].logprob)
        backend = load_backend(f"{server.url}?model=bare")
        # two listed tokens that are words, neither a prefix of the other: each label's score is its token's
        words = [t for t in first.top_logprobs if t.token.strip().isalpha()]
        a, b = next((x, y) for x in words for y in words
                    if not x.token.strip().startswith(y.token.strip()) and not y.token.strip().startswith(x.token.strip()))
        scores = backend.loglikelihood([[{"role": "user", "content": "great"}]] * 3,
                                       [a.token.strip() + "zz", b.token.strip(), "\u2603 nothing like it"])
    assert [s.logprob for s in scores] == pytest.approx([a.logprob, b.logprob, NO_SCORE], abs=1e-4)
    assert backend.scoring.via_logprobs == 1


def test_completions_endpoint_batches_prompts(sharp_model_dir):
    local = load_backend(str(sharp_model_dir))
    with serving(str(sharp_model_dir)) as server:
        client = openai.OpenAI(base_url=server.url, api_key="unused")
        r = client.completions.create(model="bare", prompt=INPUTS[:3], max_tokens=4, temperature=0)
    expected = local.generate_ids([local.encode(x) for x in INPUTS[:3]], _config(4))
    assert [c.text for c in r.choices] == [c.text for c in expected]


def post(server, body, **kw):
    return httpx.post(server.url + "/chat/completions", json=body, **kw)


def test_client_mistakes_get_4xx_with_an_openai_error_body(sharp_model_dir):
    ok = {"model": "bare", "messages": [{"role": "user", "content": "hi"}]}
    with serving(str(sharp_model_dir), limits=Limits(max_tokens=32, max_request_bytes=10_000)) as server:
        cases = {
            "not json": httpx.post(server.url + "/chat/completions", content=b"{nope",
                                   headers={"content-type": "application/json"}),
            "no messages": post(server, {"model": "bare", "messages": []}),
            "bad role": post(server, {**ok, "messages": [{"role": "robot", "content": "x"}]}),
            "temperature": post(server, {**ok, "temperature": 7}),
            "n": post(server, {**ok, "n": 3}),
            "max_tokens": post(server, {**ok, "max_tokens": 33}),
            "negative max_tokens": post(server, {**ok, "max_tokens": -1}),
            "context": post(server, {**ok, "messages": [{"role": "user", "content": "great " * 1500}]}),
            "model": post(server, {**ok, "model": "gpt-5"}),
            "too large": post(server, {**ok, "messages": [{"role": "user", "content": "x" * 20_000}]}),
            "route": httpx.get(server.url + "/engines"),
            "no prompts": httpx.post(server.url + "/completions", json={"model": "bare", "prompt": []}),
            "logprobs 9": httpx.post(server.url + "/completions", json={"model": "bare", "prompt": "a", "logprobs": 9}),
        }
        fine = post(server, {**ok, "max_tokens": 32})
    assert fine.status_code == 200
    for name, r in cases.items():
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text)
        assert set(r.json()["error"]) >= {"message", "type", "param", "code"}, name
    assert cases["model"].status_code == 404 and cases["too large"].status_code == 413
    assert cases["max_tokens"].json()["error"]["param"] == "max_tokens"
    assert cases["context"].json()["error"]["code"] == "context_length_exceeded"


def test_api_key_and_host_warning(sharp_model_dir, monkeypatch):
    monkeypatch.setenv("SERVE_KEY", "k-123")
    with serving(str(sharp_model_dir), api_key_env="SERVE_KEY") as server:
        assert httpx.get(server.url + "/models").status_code == 401
        client = openai.OpenAI(base_url=server.url, api_key="k-123")
        assert [m.id for m in client.models.list()] == ["bare"]
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")


def test_arm_from_files_needs_the_task_for_demos(sharp_model_dir, tmp_path):
    from tuneoff.errors import TuneoffError

    arm_file = tmp_path / "arm.yaml"
    arm_file.write_text("name: sim\nshots: 2\ndemo_selection: similar\n")
    with pytest.raises(TuneoffError, match="needs its task"):
        arm_from_files(str(sharp_model_dir), arm_file, None)
    explicit = tmp_path / "explicit.yaml"
    explicit.write_text("name: ex\nshots: 2\ndemos: " + json.dumps(DEMOS) + "\n")
    served = arm_from_files(str(sharp_model_dir), explicit, None)
    assert served.name == "ex" and served.messages([{"role": "user", "content": "hi"}])[0]["content"] == "great movie"


def test_the_worker_fails_requests_not_itself(sharp_model_dir):
    from tuneoff.serve.worker import Worker

    backend = load_backend(ModelSpec(str(sharp_model_dir)))
    worker = Worker(backend)

    async def go():
        bad = worker.run("generate", [10 ** 6], _config(2))  # a token id past the vocabulary
        good = worker.run("generate", backend.encode("great"), _config(2))
        return await asyncio.gather(bad, good, return_exceptions=True)

    bad, good = asyncio.run(go())
    worker.close()
    assert isinstance(bad, Exception) and good.tokens_out == 2


def test_logprob_requests_are_batched_and_match_one_at_a_time(sharp_model_dir):
    def ask(client, text):
        r = chat(client, "bare", text, max_tokens=3, logprobs=True, top_logprobs=3)
        return r.choices[0].message.content, [(t.token, round(t.logprob, 3)) for t in r.choices[0].logprobs.content]

    with serving(str(sharp_model_dir)) as server:
        client = openai.OpenAI(base_url=server.url, api_key="unused")
        alone = [ask(client, x) for x in INPUTS[:4]]
        with ThreadPoolExecutor(4) as pool:
            together = list(pool.map(lambda x: ask(client, x), INPUTS[:4]))
        batches = server.server.config.app.state.worker.batches
        stopped = chat(client, "bare", INPUTS[0], max_tokens=6, logprobs=True, stop=[alone[0][0][1:3]])
    assert together == alone and max(batches) > 1
    assert stopped.choices[0].message.content == alone[0][0][:1] and len(stopped.choices[0].logprobs.content) <= 1


def test_an_arm_on_a_served_model_is_refused_with_a_hint():
    from tuneoff.errors import TuneoffError

    with pytest.raises(TuneoffError, match="served elsewhere") as info:
        build(ServedArm("remote", "http://127.0.0.1:9/v1#big"), ServeOptions())
    assert "local MODEL" in info.value.hint


def test_served_arm_selects_similar_demos_per_request_and_extracts_cot_answers(sharp_model_dir):
    pool = tuple(Example(input=d["input"], target=d["target"], id=str(i)) for i, d in enumerate(DEMOS))
    ctx = TaskContext(name="toy", labels=("negative", "positive"), pool=pool)
    arm = PromptArm(name="sim", shots=1, demo_selection="similar", chain_of_thought=True, system="Be a critic.")
    served = ServedArm("sim", str(sharp_model_dir), prepare(arm, ctx))
    for text, demo in [("so dull and boring", "dull and boring"), ("a great movie", "great movie")]:
        messages = served.messages([{"role": "user", "content": text}])
        assert messages[0] == {"role": "system", "content": "Be a critic."}
        assert demo in messages[1]["content"] and text in messages[-1]["content"]
    assert served.answer("The film drags on. The answer is negative.") == "negative"


def test_score_arm_over_http_with_the_template_scores_exactly_like_the_local_run(sharp_model_dir):
    """`template=` makes the backend score labels by echo + logprobs: the same predictions (and, to float
    rounding, the same log-probabilities) as the arm scored locally."""
    arm = PromptArm(name="zero", system="You are terse.", instruction="Classify.", mode="score", score_norm="sum")
    items = [Example(input=x, target="the", id=str(i)) for i, x in enumerate(INPUTS)]
    labels = ("the", "a", "movie", "film", "card payment")  # a two-token label too
    local = evaluate(load_backend(str(sharp_model_dir)), arm, items, task(labels))
    with serving(str(sharp_model_dir)) as server:
        remote = evaluate(load_backend(f"{server.url}?model=bare&template={sharp_model_dir}"), arm, items, task(labels))
    assert [p["prediction"] for p in remote.predictions] == [p["prediction"] for p in local.predictions]
    for r, l in zip(remote.predictions, local.predictions):
        assert r["extra"]["logprobs"] == pytest.approx(l["extra"]["logprobs"], abs=1e-3)
    assert len({p["prediction"] for p in local.predictions}) > 1


def test_echo_scores_prompts_in_one_batched_pass_and_matches_generation(sharp_model_dir):
    local = load_backend(str(sharp_model_dir))
    with serving(str(sharp_model_dir)) as server:
        client = openai.OpenAI(base_url=server.url, api_key="unused")
        r = client.completions.create(model="bare", prompt=INPUTS[:4], max_tokens=1, temperature=0, echo=True,
                                      logprobs=0)
        batches = server.server.config.app.state.worker.batches
    for prompt, choice in zip(INPUTS[:4], r.choices):
        ids = local.encode(prompt)
        lp = choice.logprobs
        assert lp.token_logprobs[0] is None and len(lp.tokens) == len(ids) + 1
        assert lp.text_offset[:len(ids)] == [len(local.tokenizer.decode(ids[:i])) for i in range(len(ids))]
        # the generated token from the scoring pass is the greedy one
        assert choice.text == prompt + local.generate_ids([ids], _config(1))[0].text
    assert max(batches) > 1
