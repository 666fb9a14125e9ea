"""Calibrated label scoring: a backend with a built-in label prior is corrected by contextual
calibration and by domain-conditional PMI; label words; the label-word check."""

import pytest

from tuneoff.data import Example
from tuneoff.errors import TuneoffError
from tuneoff.evaluate import evaluate
from tuneoff.evaluate.calibration import calibrate, check_label_words
from tuneoff.models.base import BackendInfo, Score
from tuneoff.prompting import PromptArm, TaskContext
from tuneoff.store import Store

LABELS = ("negative", "positive")


class BiasedBackend:
    """Prefers `negative` by 3 nats whatever the input; the input's cue word adds 2 to its label.
    Uncalibrated, every item is `negative`; a correction for the prior recovers the cue."""

    batch_size = 8
    bias = {"negative": 3.0, "positive": 0.0, "terrible": 3.0, "great": 0.0}
    cues = {"good": ("positive", "great"), "bad": ("negative", "terrible")}

    def __init__(self):
        self.info = BackendInfo(name="biased")
        self.scored: list[str] = []

    def render(self, messages, add_generation_prompt=True) -> str:
        return "\n".join(f"<{m['role']}>{m['content']}" for m in messages) + "\n<assistant>"

    def loglikelihood(self, chats, continuations) -> list[Score]:
        out = []
        for chat, word in zip(chats, continuations):
            text = chat[-1]["content"].split("\n\n")[-1]
            self.scored.append(text)
            cue = next((v for k, v in self.cues.items() if k in text.split()), ())
            out.append(Score(self.bias[word] + (2.0 if word in cue else 0.0), tokens=1, tokens_in=5, seconds=0.01))
        return out

    def generate(self, chats, config):
        raise AssertionError("score mode only")

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def items() -> list[Example]:
    return [Example(f"a {'good' if i % 2 else 'bad'} film number {i}", LABELS[i % 2], id=f"i{i}") for i in range(12)]


def accuracy(arm: PromptArm, backend=None, store=None) -> float:
    result = evaluate(backend or BiasedBackend(), arm, items(), TaskContext(labels=LABELS, instruction="Sentiment?"),
                      store=store or Store(":memory:"))
    return result.main.value


def test_a_biased_model_scores_the_majority_prior_uncalibrated():
    assert accuracy(PromptArm(name="raw", mode="score")) == pytest.approx(0.5)


@pytest.mark.parametrize("method", ["contextual", "pmi"])
def test_calibration_corrects_the_label_prior(method):
    assert accuracy(PromptArm(name=method, mode="score", calibration=method)) == pytest.approx(1.0)


def test_calibration_reuses_the_stored_item_calls_and_scores_references_once():
    store, backend = Store(":memory:"), BiasedBackend()
    accuracy(PromptArm(name="raw", mode="score"), backend, store)
    backend.scored.clear()
    assert accuracy(PromptArm(name="cal", mode="score", calibration="contextual"), backend, store) == 1.0
    # zero-shot: one prompt per content-free input, whatever the item count; the 12 item calls are cached
    assert sorted(backend.scored) == sorted(["N/A", "[MASK]", "Sentiment?"] * 2)


def test_label_words_score_a_verbaliser_and_predict_the_label():
    arm = PromptArm(name="words", mode="score", label_words={"positive": "great", "negative": "terrible"},
                    calibration="contextual")
    store = Store(":memory:")
    assert accuracy(arm, store=store) == 1.0
    predictions = {r["prediction"] for r in store.db.execute("SELECT prediction FROM predictions")}
    assert predictions == set(LABELS)
    with pytest.raises(TuneoffError, match="label_words names labels the task does not have: neutral"):
        accuracy(PromptArm(name="bad", mode="score", label_words={"neutral": "meh"}))


def test_calibration_is_for_scoring_only():
    with pytest.raises(TuneoffError, match="calibration and label_words apply to label scoring"):
        PromptArm(name="x", mode="generate", calibration="pmi")


def test_contextual_calibration_divides_out_the_content_free_distribution():
    # equal content-free preference changes nothing; a prior towards label 0 is removed
    assert calibrate([-1.0, -2.0], [[0.0, 0.0]], "contextual")[0] > calibrate([-1.0, -2.0], [[0.0, 0.0]], "contextual")[1]
    fixed = calibrate([-1.0, -2.0], [[0.0, -3.0], [0.0, -3.0]], "contextual")
    assert fixed[1] > fixed[0]
    assert calibrate([-1.0, -2.0], [[-0.5, -4.0]], "pmi") == [-0.5, 2.0]
    assert calibrate([-1.0, -2.0], [], "none") == [-1.0, -2.0]


def test_label_word_check_warns_about_shared_first_tokens_and_length():
    warnings = check_label_words({"card arrival": [5, 9], "card linking": [5, 11], "refund": [7]})
    assert any("share their first token" in w and "card arrival" in w for w in warnings)
    assert check_label_words({"positive": [1], "negative": [2]}) == []
    assert any("lengths differ" in w for w in check_label_words({"a": [1], "a much longer label": [2, 3, 4, 5]}))


def test_prompt_tuning_tries_calibration_and_demo_counts_and_keeps_the_best():
    from tuneoff.evaluate.optimise import optimise
    from tuneoff.prompting.arm import OptimiseSpec

    pool = [Example(f"a {'good' if i % 2 else 'bad'} pool film {i}", LABELS[i % 2], id=f"p{i}") for i in range(10)]
    ctx = TaskContext(labels=LABELS, instruction="Sentiment?", pool=tuple(pool))
    spec = OptimiseSpec(budget=200, paraphrases=0, demo_sets=0, shot_counts=[0, 2], calibrations=["none", "contextual"])
    result = optimise(BiasedBackend(), PromptArm(name="t", mode="score", shots=4), pool, items(), ctx, spec=spec)
    assert result.arm.calibration == "contextual" and result.dev_score == 1.0
    assert [(t.shots, t.calibration) for t in result.trials] == [(4, "none"), (0, "none"), (2, "none"),
                                                                 (4, "contextual")]
    zero = optimise(BiasedBackend(), PromptArm(name="z", mode="score"), pool, items(), ctx, spec=spec)
    assert all(t.shots == 0 for t in zero.trials)  # a zero-shot arm stays zero-shot
