"""Base models get completion text, chat models get messages: the prompt format as an option of prompt arms
and `ask`, on a tiny random Llama built WITHOUT a chat template (the base case) and one with it."""

from __future__ import annotations

import pytest

from tuneoff.ask import ask, build_request
from tuneoff.config.specs import from_dict, load_spec
from tuneoff.data import Example
from tuneoff.errors import TuneoffError
from tuneoff.evaluate.engine import evaluate
from tuneoff.evaluate.scoring import replies
from tuneoff.models import ModelSpec
from tuneoff.models.base import BackendInfo, GenerationConfig
from tuneoff.models.chat import CompletionFormat, field_stops, resolve_format, split_prompt_completion
from tuneoff.models.local import TransformersBackend
from tuneoff.models.weights import marked_base
from tuneoff.prompting import PromptArm, TaskContext, prepare
from tuneoff.store import Store

from conftest import build_tiny_llama, build_tokenizer

TRANSLATION_PROMPT = ("Translate English to French.\n\n"
                      "English: sea otter\nFrench: loutre de mer\n\n"
                      "English: peppermint\nFrench: menthe poivrée\n\n"
                      "English: plush giraffe\nFrench: girafe en peluche\n\n"
                      "English: cheese\nFrench:")
CHEESE = Example("cheese", "fromage", id="q")


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


@pytest.fixture(scope="module")
def base_backend():
    """The tiny random Llama as a base model: its tokenizer has no chat template."""
    tokenizer = build_tokenizer()
    tokenizer.chat_template = None
    return TransformersBackend(build_tiny_llama(tokenizer), tokenizer, BackendInfo(name="tiny-base"), batch_size=4)


@pytest.fixture(scope="module")
def chat_backend():
    tokenizer = build_tokenizer()
    return TransformersBackend(build_tiny_llama(tokenizer), tokenizer, BackendInfo(name="tiny-chat"), batch_size=4)


def translation_arm() -> PromptArm:
    from pathlib import Path

    return load_spec(PromptArm, Path(__file__).parents[1] / "examples/arms/translation.yaml")


# -- which format -----------------------------------------------------------------------------------
def test_backend_knows_whether_it_is_a_chat_model(base_backend, chat_backend):
    assert base_backend.info.chat is False and chat_backend.info.chat is True
    assert (resolve_format("auto", False), resolve_format("auto", True)) == ("completion", "chat")
    assert resolve_format("chat", False) == "chat"  # an explicit format wins
    with pytest.raises(TuneoffError, match="did you mean 'completion'"):
        resolve_format("completon", True)
    # an embedded model declared a base model is one, whatever its tokenizer carries; and so is its adapter
    assert marked_base("embedded:gemma3-270m") and marked_base("/some/adapter", base="embedded:gemma3-270m")
    assert not marked_base("embedded:smollm2-135m-instruct") and not marked_base("/a/dir")


def test_a_backend_marked_base_ignores_its_tokenizers_template():
    tokenizer = build_tokenizer()  # with a chat template
    backend = TransformersBackend(build_tiny_llama(tokenizer), tokenizer, BackendInfo(name="b", chat=False))
    assert backend.info.chat is False and not backend.use_chat_template


# -- prompt arms ------------------------------------------------------------------------------------
def test_translation_arm_on_a_base_model_is_completion_text_with_derived_stops():
    arm = translation_arm()
    prompter = prepare(arm, TaskContext(metric="chrf"), CHEESE, chat_model=False)
    assert prompter.format == "completion"
    assert prompter.messages(CHEESE) == TRANSLATION_PROMPT
    # the arm's own stop, then a blank line and the next input label
    assert prompter.stop == ("\n", "\n\n", "\nEnglish:")
    # on a chat model the same arm is turns, with only its own stops
    chat = prepare(arm, TaskContext(metric="chrf"), CHEESE, chat_model=True)
    assert chat.format == "chat" and chat.stop == ("\n",)
    assert chat.messages(CHEESE)[-1] == {"role": "user", "content": "cheese"}


def test_completion_format_with_persona_chain_of_thought_and_default_labels():
    ctx = TaskContext(labels=("negative", "positive"), instruction="Classify the review.",
                      pool=(Example("great", "positive", id="a"),))
    arm = PromptArm(name="cot", system="You are a film critic.", shots=1, chain_of_thought=True, format="completion")
    item = Example("a fine film", "positive")
    prompter = prepare(arm, ctx, item)
    assert prompter.messages(item) == (
        "You are a film critic.\n\nClassify the review.\n\nAnswer with one of: negative, positive.\n\n"
        f"{arm.cot_prompt}\n\nInput: great\nOutput: The answer is positive.\n\nInput: a fine film\nOutput:")
    assert prompter.stop == ("\nInput:",)  # reasoning may run over paragraphs: only the next item ends it


def test_completion_format_is_checked_as_data():
    with pytest.raises(TuneoffError, match="demo_format"):
        PromptArm(format="completion", demo_format="inline")
    with pytest.raises(TuneoffError, match="input_prefix"):
        from_dict(PromptArm, {"input_prefix": "English:\nFrench:"})
    with pytest.raises(TuneoffError, match="format"):
        from_dict(PromptArm, {"format": "completions"})
    fmt = CompletionFormat("Q:", "A:")
    assert fmt.prompt(["", "Answer briefly."], [("2+2", " 4 ")], "3+3") == "Answer briefly.\n\nQ: 2+2\nA: 4\n\nQ: 3+3\nA:"


def test_evaluate_on_a_base_model_sends_completion_text_and_stops(base_backend):
    store = Store(":memory:")
    result = evaluate(base_backend, translation_arm(), [CHEESE, Example("good morning", "bonjour")],
                      TaskContext(metric="chrf"), store=store)
    calls = store.calls(result.run_id)
    assert calls[0]["prompt"] == TRANSLATION_PROMPT  # sent as is: no role labels, no template
    assert all("\n" not in p["output"] for p in result.predictions)
    import json

    assert json.loads(calls[0]["params_json"])["stop"] == ["\n", "\n\n", "\nEnglish:"]


def test_completion_text_is_encoded_with_the_tokenizers_special_tokens(base_backend, chat_backend):
    text = "English: cheese\nFrench:"
    for backend in (base_backend, chat_backend):
        expected = backend.tokenizer(text, add_special_tokens=True)["input_ids"]
        assert backend.render(text) == text and backend.encode_prompt(text) == expected
        out = backend.generate([text], GenerationConfig(max_new_tokens=3))[0]
        assert out.tokens_in == len(expected)


def test_score_mode_on_completion_text_scores_the_answer_paragraph(base_backend):
    assert split_prompt_completion(base_backend.tokenizer, "x\nFrench:", "merci") == ("x\nFrench:", " merci\n\n")
    assert replies(base_backend, "English: x\nFrench:", ["oui", "non"], end_of_turn=True) == [" oui\n\n", " non\n\n"]
    assert replies(base_backend, "English: x\nFrench:", ["oui", "non"], end_of_turn=False) == [" oui", " non"]
    ctx = TaskContext(labels=("negative", "positive"))
    result = evaluate(base_backend, PromptArm(name="s", mode="score"), [Example("great", "positive")], ctx)
    assert result.predictions[0]["prediction"] in ctx.labels


# -- ask ------------------------------------------------------------------------------------------
def test_ask_sends_a_raw_completion_to_a_base_model(base_backend, tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    result = ask("The capital of France is", ModelSpec("tiny"), store, backend=base_backend,
                 config=GenerationConfig(max_new_tokens=6))
    assert result.format == "completion" and result.messages == "The capital of France is"
    call = store.calls(result.run_id)[0]
    assert call["prompt"] == "The capital of France is"
    assert "\n\n" not in result.completion.text


def test_ask_on_a_chat_model_sends_a_user_message(chat_backend, tmp_path):
    result = ask("hello", ModelSpec("tiny"), Store(tmp_path / "r.sqlite"), backend=chat_backend,
                 config=GenerationConfig(max_new_tokens=2))
    assert result.format == "chat" and result.messages == [{"role": "user", "content": "hello"}]


def test_ask_stops_at_a_blank_line_or_an_echoed_field(tmp_path):
    assert field_stops("The capital of France is") == ("\n\n",)
    # a prompt ending in a bare label asks for that field's value: one line
    assert field_stops("English: thank you\nFrench:") == ("\n", "\n\n", "\nEnglish:", "\nFrench:")
    demos = tmp_path / "demos.jsonl"
    demos.write_text('{"prompt": "cheese", "completion": "fromage"}\n')
    text, stops = build_request("thank you", "completion", system="Translate.", demos_file=demos)
    assert text == "Translate.\n\nInput: cheese\nOutput: fromage\n\nInput: thank you\nOutput:"
    assert "\nInput:" in stops and "\n\n" in stops
    messages, none = build_request("thank you", "chat", demos_file=demos)
    assert messages[-1] == {"role": "user", "content": "thank you"} and none == ()


# -- fine-tuning on the format the arm is evaluated with -------------------------------------------
def test_training_on_completion_text_learns_the_answer_paragraph(base_backend):
    from tuneoff.finetune.collate import IGNORE, encode_example

    tok = base_backend.tokenizer
    enc = encode_example(tok, "English: cheese\nFrench:", "fromage", max_length=64)
    prompt_ids = tok("English: cheese\nFrench:", add_special_tokens=True)["input_ids"]
    answer_ids = tok(" fromage\n\n", add_special_tokens=False)["input_ids"]
    assert enc.input_ids == prompt_ids + answer_ids  # the very tokens the backend scores and generates after
    assert enc.labels == [IGNORE] * len(prompt_ids) + answer_ids


def test_is_chat_model_reads_the_tokenizer(tmp_path, base_backend, chat_backend):
    from tuneoff.models.weights import is_chat_model

    for name, backend in (("base", base_backend), ("chat", chat_backend)):
        backend.model.save_pretrained(tmp_path / name)
        backend.tokenizer.save_pretrained(tmp_path / name)
    assert not is_chat_model(str(tmp_path / "base")) and is_chat_model(str(tmp_path / "chat"))
