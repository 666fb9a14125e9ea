"""The evaluation engine on a scripted fake backend (exact numbers, cache, resume) and a tiny random
Llama (batched decoding and scoring equal one-at-a-time)."""

from __future__ import annotations

import json

import pytest

from tuneoff.evaluate.consistency import agreement, consistency
from tuneoff.data import Example
from tuneoff.errors import TuneoffError
from tuneoff.evaluate import evaluate, run_eval
from tuneoff.models.base import BackendInfo, Completion, GenerationConfig, Score
from tuneoff.prompting import PromptArm, TaskContext
from tuneoff.store import Store

LABELS = ("negative", "positive")


class FakeBackend:
    """Scripted replies keyed by the item text (the last paragraph of the last user turn)."""

    batch_size = 4

    def __init__(self, replies=None, logprobs=None, fail_after: int | None = None):
        self.info = BackendInfo(name="fake")
        self.replies = replies or {}
        self.logprobs = logprobs or {}
        self.fail_after = fail_after
        self.requests: list[list[dict]] = []

    def item(self, chat) -> str:
        """The scripted key in the last user turn (prompts add an instruction or a cue around it)."""
        paragraphs = chat[-1]["content"].split("\n\n")
        return next((p for p in paragraphs if p in self.replies or p in self.logprobs), paragraphs[-1])

    def render(self, messages, add_generation_prompt=True) -> str:
        return "\n".join(f"<{m['role']}>{m['content']}" for m in messages) + "\n<assistant>"

    def _record(self, chats) -> None:
        for chat in chats:
            if self.fail_after is not None and len(self.requests) >= self.fail_after:
                raise RuntimeError("backend went away")
            self.requests.append(list(chat))

    def generate(self, chats, config: GenerationConfig) -> list[Completion]:
        self._record(chats)
        return [Completion(self.replies[self.item(c)], tokens_in=10, tokens_out=3, seconds=0.2,
                           batch_size=len(chats)) for c in chats]

    def loglikelihood(self, chats, continuations) -> list[Score]:
        self._record(chats)
        return [Score(self.logprobs[self.item(c)][k], tokens=len(k.split("_")), tokens_in=7, seconds=0.1)
                for c, k in zip(chats, continuations)]

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def sentiment(n: int = 6) -> list[Example]:
    return [Example(f"review {i}", LABELS[i % 2], id=f"r{i}") for i in range(n)]


SCRIPT = {"review 0": "negative", "review 1": "Positive.", "review 2": "neutral",
          "review 3": "I cannot tell, sorry.", "review 4": "positive", "review 5": "The answer is positive"}
CTX = TaskContext(name="sst", labels=LABELS, metric="accuracy")


def test_scripted_replies_give_exact_metrics():
    store = Store(":memory:")
    result = evaluate(FakeBackend(SCRIPT), PromptArm(name="zero"), sentiment(), CTX, store=store)
    m = result.metrics
    assert m["accuracy"].value == pytest.approx(0.5)
    assert m["accuracy"].ci_low <= 0.5 <= m["accuracy"].ci_high
    assert m["macro_f1"].value == pytest.approx((0.5 + 2 / 3) / 2)
    assert m["confusion_matrix"].extra["matrix"] == [[1, 1, 1], [0, 2, 1]]
    assert m["format_violation_rate"].value == pytest.approx(1 / 6)
    assert m["hallucinated_label_rate"].value == pytest.approx(1 / 6)
    assert m["tokens_in_mean"].value == 10 and m["tokens_out_mean"].value == 3
    assert m["latency_p50"].value == pytest.approx(0.2)
    stored = store.metrics(result.run_id)
    assert stored["accuracy"]["value"] == pytest.approx(0.5) and stored["accuracy"]["ci_low"] is not None
    assert json.loads(stored["confusion_matrix"]["extra_json"])["matrix"] == [[1, 1, 1], [0, 2, 1]]
    rows = store.predictions(result.run_id)
    assert [r["prediction"] for r in rows] == ["negative", "positive", "neutral", None, "positive", "positive"]
    assert [r["correct"] for r in rows] == [1, 1, 0, 0, 0, 1]
    assert len(store.calls(result.run_id)) == 6 and store.run(result.run_id)["status"] == "done"


def test_template_mistakes_fail_before_any_model_call():
    backend, store = FakeBackend(SCRIPT), Store(":memory:")
    with pytest.raises(TuneoffError) as err:
        evaluate(backend, PromptArm(name="x", template="Review: {{ inptu }}"), sentiment(), CTX, store=store)
    assert err.value.field == "template" and "inptu" in str(err.value)
    with pytest.raises(TuneoffError) as err:
        evaluate(backend, PromptArm(name="x", system="You like {{ genre }}."), sentiment(), CTX, store=store)
    assert err.value.field == "system"
    with pytest.raises(TuneoffError) as err:
        PromptArm(name="x", instruction="Classify {{ labels | join(', ') }")
    assert err.value.field == "instruction" and "syntax" in str(err.value)
    assert backend.requests == [] and store.runs() == []


def test_second_run_is_served_from_the_cache():
    backend, store = FakeBackend(SCRIPT), Store(":memory:")
    first = evaluate(backend, PromptArm(name="zero"), sentiment(), CTX, store=store)
    assert (first.cache_hits, first.cache_misses, len(backend.requests)) == (0, 6, 6)
    second = evaluate(backend, PromptArm(name="zero"), sentiment(), CTX, store=store)
    assert (second.cache_hits, second.cache_misses, len(backend.requests)) == (6, 0, 6)
    assert second.run_id != first.run_id
    assert second.main.value == first.main.value
    assert second.metrics["tokens_in_mean"].value == 10  # a hit reports what the stored call cost


def test_interrupted_run_resumes_where_it_stopped():
    store = Store(":memory:")
    broken = FakeBackend(SCRIPT, fail_after=4)
    with pytest.raises(RuntimeError):
        evaluate(broken, PromptArm(name="zero"), sentiment(10 - 4), CTX, store=store, chunk_size=2)
    run = store.runs()[0]
    assert run["status"] == "failed" and store.done_items(run["id"]) == {0, 1, 2, 3}
    fixed = FakeBackend(SCRIPT)
    result = evaluate(fixed, PromptArm(name="zero"), sentiment(6), CTX, store=store, chunk_size=2)
    assert result.run_id == run["id"] and result.resumed == 4
    assert [fixed.item(c) for c in fixed.requests] == ["review 4", "review 5"]
    assert len(store.predictions(result.run_id)) == 6 and result.main.value == pytest.approx(0.5)
    assert store.run(result.run_id)["status"] == "done"


def test_a_killed_run_resumes_and_keeps_its_time():
    store = Store(":memory:")
    with pytest.raises(RuntimeError):
        evaluate(FakeBackend(SCRIPT, fail_after=2), PromptArm(name="zero"), sentiment(), CTX, store=store, chunk_size=2)
    run = store.runs()[0]
    # what a SIGKILL leaves: status still running, no summary written
    store.db.execute("UPDATE runs SET status='running', summary_json='{}', started_at=started_at-5 WHERE id=?",
                     (run["id"],))
    result = evaluate(FakeBackend(SCRIPT), PromptArm(name="zero"), sentiment(), CTX, store=store, chunk_size=2)
    assert result.run_id == run["id"] and result.resumed == 2 and result.cache_misses == 4
    assert result.metrics["wall_seconds"].value >= 5


def test_score_mode_picks_the_likeliest_label_and_keeps_logprobs():
    logprobs = {f"review {i}": {"negative": -1.0 - (i % 2), "positive": -1.5 + (i % 2)} for i in range(4)}
    backend, store = FakeBackend(logprobs=logprobs), Store(":memory:")
    arm = PromptArm(name="score", mode="score")
    result = evaluate(backend, arm, sentiment(4), CTX, store=store)
    assert result.main.value == 1.0 and result.metrics["format_violation_rate"].value == 0
    row = result.predictions[1]
    assert row["output"] == "positive" and row["extra"]["logprobs"] == {"negative": -2.0, "positive": -0.5}
    call = store.calls(result.run_id)[0]
    assert json.loads(call["params_json"])["labels"] == list(LABELS) and call["output"] == "negative"
    again = evaluate(backend, arm, sentiment(4), CTX, store=store)
    assert again.cache_hits == 4 and len(backend.requests) == 4 * 2
    assert again.predictions[1]["extra"]["logprobs"] == {"negative": -2.0, "positive": -0.5}


def test_score_norm_mean_divides_by_label_tokens():
    labels = ("card_arrival_late", "fee")
    lp = {"q": {"card_arrival_late": -3.0, "fee": -2.0}}
    ctx = TaskContext(labels=labels)
    ex = [Example("q", "card_arrival_late")]
    assert evaluate(FakeBackend(logprobs=lp), PromptArm(mode="score", score_norm="mean"), ex, ctx).main.value == 1
    assert evaluate(FakeBackend(logprobs=lp), PromptArm(mode="score", score_norm="sum"), ex, ctx).main.value == 0


def test_score_mode_needs_labels():
    with pytest.raises(TuneoffError) as err:
        evaluate(FakeBackend(), PromptArm(mode="score"), sentiment(2), TaskContext(metric="exact_match"))
    assert err.value.field == "mode"


def test_chain_of_thought_on_numeric_answers():
    replies = {"q1": "3 + 4 = 7. Then 7 * 2 = 14.\nThe answer is 14.", "q2": "It is 1,200 + 34.\n#### 1,234",
               "q3": "I am not sure."}
    examples = [Example("q1", "Tom has ...\n#### 14"), Example("q2", "#### 1234"), Example("q3", "#### 5")]
    backend = FakeBackend(replies)
    result = evaluate(backend, PromptArm(name="cot", chain_of_thought=True), examples, TaskContext(metric="numeric"))
    assert [p["prediction"] for p in result.predictions] == ["14", "1234", None]
    assert result.main.value == pytest.approx(2 / 3)
    assert result.metrics["format_violation_rate"].value == pytest.approx(1 / 3)
    assert "The answer is X" in backend.requests[0][-1]["content"]


def test_free_text_chrf():
    replies = {"The cat sleeps.": "Le chat dort.", "Good night.": "Bonne journée."}
    examples = [Example("The cat sleeps.", "Le chat dort."), Example("Good night.", "Bonne nuit.")]
    result = evaluate(FakeBackend(replies), PromptArm(), examples, TaskContext(metric="chrf"))
    assert 0 < result.main.value < 100 and result.predictions[0]["correct"] == pytest.approx(1.0)


def test_consistency_agreement_and_spread():
    # the paraphrase changes one answer out of six
    class Reworded(FakeBackend):
        def generate(self, chats, config):
            out = super().generate(chats, config)
            return [Completion("positive", 10, 1, 0.1) if "Judge" in c[-1]["content"] and self.item(c) == "review 0"
                    else o for c, o in zip(chats, out)]

    store = Store(":memory:")
    arm = PromptArm(name="zero", instruction="Classify.", paraphrases=["Judge the review."])
    result = consistency(Reworded(SCRIPT), arm, sentiment(), CTX, store=store)
    assert len(result.variants) == 2 and result.agreement == pytest.approx(5 / 6)
    assert (result.low, result.high) == pytest.approx((2 / 6, 3 / 6))
    assert store.metrics(result.run_id)["agreement"]["value"] == pytest.approx(5 / 6)
    assert agreement([["a", "b"], ["a", "c"], ["a", "b"]]) == 0.5
    with pytest.raises(TuneoffError):
        consistency(FakeBackend(SCRIPT), PromptArm(), sentiment(), CTX)


def test_run_eval_prints_a_table():
    from rich.console import Console

    from tuneoff.config.task import TaskData, TaskSpec

    data = TaskData(TaskSpec(name="sst", test="x.tsv", labels=list(LABELS)), train=sentiment(4), dev=[],
                    test=sentiment(), labels=list(LABELS))
    console = Console(record=True, width=120)
    result = run_eval(data, {"name": "zero"}, model=FakeBackend(SCRIPT), store=Store(":memory:"), console=console)
    text = console.export_text()
    assert result.main.value == pytest.approx(0.5)
    for words in ("accuracy", "95% CI", "tokens / request", "p95", "format violations", "6 misses", "wall time"):
        assert words in text


# -- tiny random Llama: batching must not change answers ----------------------------------------
def _tiny_backend(tiny_llama, batch_size):
    from tuneoff.models.local import TransformersBackend

    model, tokenizer = tiny_llama
    return TransformersBackend(model, tokenizer, BackendInfo(name="tiny"), batch_size=batch_size)


CHATS = [[{"role": "user", "content": text}] for text in
         ["the movie was great", "a dull boring film what a waste of time and money", "card payment",
          "what is the capital of france", "think step by step"]]


def test_batched_greedy_equals_one_at_a_time(tiny_llama):
    config = GenerationConfig(max_new_tokens=6)
    batched = _tiny_backend(tiny_llama, 4).generate(CHATS, config)
    single = _tiny_backend(tiny_llama, 1)
    alone = [single.generate([chat], config)[0] for chat in CHATS]
    assert [c.text for c in batched] == [c.text for c in alone]
    assert [c.tokens_in for c in batched] == [c.tokens_in for c in alone]


def test_batched_loglikelihood_equals_one_at_a_time(tiny_llama):
    conts = ["positive", "negative", "card arrival", "paris", "the answer is 42"]
    batched = _tiny_backend(tiny_llama, 4).loglikelihood(CHATS, conts)
    single = _tiny_backend(tiny_llama, 1)
    alone = [single.loglikelihood([chat], [k])[0] for chat, k in zip(CHATS, conts)]
    assert [s.logprob for s in batched] == pytest.approx([s.logprob for s in alone], abs=1e-4)


def test_label_scores_equal_plain_loglikelihood(tiny_llama):
    """score_labels through the packed, prefix-sharing backend = one plain forward per (chat, label)."""
    from tuneoff.evaluate.scoring import score_labels

    backend = _tiny_backend(tiny_llama, 8)
    plain = _tiny_backend(tiny_llama, 8)
    plain.packed, plain.reuse_prefix = False, False
    labels = ["positive", "negative", "card_arrival", "exchange rate", "top_up_by_card", "0"]
    fast = score_labels(backend, CHATS, labels, end_of_turn=False)
    for chat, item in zip(CHATS, fast):
        ref = plain.loglikelihood([chat] * len(labels), labels)
        assert list(item.logprobs) == pytest.approx([s.logprob for s in ref], abs=1e-4)
        assert list(item.tokens) == [s.tokens for s in ref]
        assert item.batch_size == len(CHATS)


def test_evaluate_on_tiny_llama_batches_like_single(tiny_llama):
    examples = [Example(c[0]["content"], "positive", id=str(i)) for i, c in enumerate(CHATS)]
    arm = PromptArm(name="gen", max_new_tokens=4)
    ctx = TaskContext(labels=LABELS)
    four = evaluate(_tiny_backend(tiny_llama, 4), arm, examples, ctx)
    one = evaluate(_tiny_backend(tiny_llama, 1), arm, examples, ctx, chunk_size=1)
    assert [p["output"] for p in four.predictions] == [p["output"] for p in one.predictions]
    scored = evaluate(_tiny_backend(tiny_llama, 4), PromptArm(name="s", mode="score"), examples, ctx)
    assert all(p["prediction"] in LABELS for p in scored.predictions)


def test_score_mode_scores_each_label_with_its_end_of_turn(tiny_llama):
    from tuneoff.evaluate.scoring import replies
    from tuneoff.prompting import prepare

    backend = _tiny_backend(tiny_llama, 4)
    ctx, arm = TaskContext(labels=LABELS), PromptArm(name="s", mode="score", score_norm="sum")
    item = Example("the movie was great", "positive")
    chat = prepare(arm, ctx, item).messages(item)
    assert "Answer with one of" not in chat[-1]["content"]  # scoring confines the answer itself
    texts = replies(backend, chat, LABELS, end_of_turn=True)
    assert texts == ["negative<|im_end|>\n", "positive<|im_end|>\n"]
    plain = backend.loglikelihood([chat, chat], texts)
    result = evaluate(backend, arm, [item], ctx)
    logprobs = result.predictions[0]["extra"]["logprobs"]
    assert [logprobs[label] for label in LABELS] == pytest.approx([s.logprob for s in plain], abs=1e-4)


def test_run_eval_reads_task_and_arm_files(tmp_path):
    from rich.console import Console

    (tmp_path / "en-fr.jsonl").write_text('{"prompt": "cheese", "completion": "fromage"}\n'
                                          '{"prompt": "good morning", "completion": "bonjour"}\n')
    (tmp_path / "task.yaml").write_text("name: en-fr\ntest: en-fr.jsonl\nmetric: chrf\n")
    (tmp_path / "arm.yaml").write_text('name: few\ninstruction: "Translate English to French."\n'
                                       'demos:\n  - {input: "sea otter", target: "loutre de mer"}\n')
    backend = FakeBackend({"cheese": "fromage", "good morning": "bonsoir"})
    result = run_eval(tmp_path / "task.yaml", tmp_path / "arm.yaml", model=backend, store=Store(":memory:"),
                      console=Console(record=True, width=120))
    assert result.predictions[0]["correct"] == 1.0 and 0 < result.main.value < 100
    assert backend.requests[0][0] == {"role": "user", "content": "Translate English to French.\n\nsea otter"}
    (tmp_path / "bad.yaml").write_text("name: x\nshots: -1\n")
    with pytest.raises(TuneoffError) as err:
        run_eval(tmp_path / "task.yaml", tmp_path / "bad.yaml", model=backend, store=Store(":memory:"))
    assert err.value.field == "shots" and err.value.file.endswith("bad.yaml")
