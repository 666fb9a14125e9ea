"""Metrics: exact values on hand-checked cases, agreement with the reference implementations (sacreBLEU's
chrF, the SQuAD normaliser, scikit-learn's macro-F1) on hundreds of random cases, seeded CIs."""

from __future__ import annotations

import json
import random
import re
import string
from pathlib import Path

import numpy as np
import pytest

from tuneoff.errors import TuneoffError
from tuneoff.metrics import (INVALID, as_number, bootstrap_ci, confusion_matrix, cost_metrics, get_metric,
                             label_metrics, macro_f1, main_metric, normalise_text, rate)


def chrf(hypotheses, references) -> float:
    """Corpus chrF through the registry (sacreBLEU's statistics summed, its score from the sums)."""
    return main_metric("chrf", hypotheses, references, resamples=10).value


def chrf_stats(hypothesis, reference) -> np.ndarray:
    return get_metric("chrf").stats(hypothesis, [reference])


def chrf_total(sums) -> float:
    return float(get_metric("chrf").total(np.asarray(sums)[None, :], 1)[0])

LABELS = ["negative", "positive"]
PREDS = ["negative", "positive", "neutral", None, "positive", "positive"]
TARGETS = ["negative", "positive", "negative", "positive", "negative", "positive"]


def test_accuracy_value_and_ci():
    m = main_metric("accuracy", PREDS, TARGETS, seed=0)
    assert m.value == pytest.approx(3 / 6)
    assert m.ci_low <= m.value <= m.ci_high
    assert 0 <= m.ci_low < m.ci_high <= 1
    assert main_metric("accuracy", PREDS, TARGETS, seed=0) == m  # seeded: the same report twice


def test_confusion_matrix_puts_unreadable_and_unknown_in_invalid():
    matrix = confusion_matrix(PREDS, TARGETS, LABELS)
    assert matrix.tolist() == [[1, 1, 1], [0, 2, 1]]
    values = {v.name: v for v in label_metrics(PREDS, TARGETS, LABELS)}
    assert values["confusion_matrix"].extra["columns"] == [*LABELS, INVALID]
    # negative: tp 1, fp 0, fn 2 -> 0.5; positive: tp 2, fp 1, fn 1 -> 2/3
    assert values["macro_f1"].value == pytest.approx((0.5 + 2 / 3) / 2)
    assert values["macro_f1"].ci_low <= values["macro_f1"].value <= values["macro_f1"].ci_high


def test_macro_f1_matches_sklearn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(1)
    labels = ["a", "b", "c", "d"]
    targets = list(rng.choice(labels, 200))
    preds = [t if rng.random() < 0.6 else str(rng.choice(labels + ["zzz"])) for t in targets]
    ours = macro_f1(confusion_matrix(preds, targets, labels))
    theirs = f1_score(targets, preds, labels=labels, average="macro", zero_division=0)
    assert ours == pytest.approx(theirs)


def test_macro_f1_matches_sklearn_on_random_small_samples():
    # small samples leave labels absent; an unreadable (None) or undeclared reply is a miss, not a class:
    # scikit-learn agrees when given the labels that occur, with the undeclared predictions outside them
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(7)
    labels = ["a", "b", "c", "d", "e"]
    for _ in range(300):
        n = int(rng.integers(1, 12))
        targets = [str(x) for x in rng.choice(labels, n)]
        preds = [None if rng.random() < 0.1 else str(rng.choice(labels + ["zzz"])) for _ in range(n)]
        present = [label for label in labels if label in targets or label in preds]
        theirs = f1_score(targets, [p or INVALID for p in preds], labels=present, average="macro", zero_division=0)
        assert macro_f1(confusion_matrix(preds, targets, labels)) == pytest.approx(theirs, abs=1e-12)


def squad_normalize_answer(s):
    """The official SQuAD v1.1/v2.0 evaluation script's `normalize_answer`, verbatim (the reference)."""
    def remove_articles(text):
        return re.sub(r'\b(a|an|the)\b', ' ', text)

    def white_space_fix(text):
        return ' '.join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return ''.join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def test_exact_match_agrees_with_the_squad_script():
    rng = random.Random(3)
    words = ["The", "a", "an", "Eiffel", "tower", "théâtre", "Ünïcode", "THE", "them", "and", "x"]
    marks = list(string.punctuation) + [" ", "  ", "\t", "\n", "\u00a0", "«", "»", "—"]
    texts = ["".join(rng.choice(words + marks) for _ in range(rng.randint(0, 8))) for _ in range(400)]
    m = get_metric("exact_match")
    for text in texts:
        assert normalise_text(text) == squad_normalize_answer(text)
    for pred, target in zip(texts, texts[1:] + texts[:1]):
        expected = float(squad_normalize_answer(pred) == squad_normalize_answer(target))
        assert m.item(pred, target) == expected


def test_exact_match_normalises():
    m = get_metric("exact_match")
    assert m.item("The Eiffel Tower!", "eiffel tower") == 1.0
    assert m.item("Eiffel", "eiffel tower") == 0.0
    assert m.item(None, "x") == 0.0
    assert normalise_text("  A  cat, the dog. ") == "cat dog"


@pytest.mark.parametrize("pred,target,ok", [
    ("1234", "Janet sells ... so 1,234 in all.\n#### 1,234", True),
    ("18.0", "#### 18", True),
    ("-3", "-3", True),
    ("17", "#### 18", False),
    (None, "#### 18", False),
])
def test_numeric_match(pred, target, ok):
    assert get_metric("numeric").item(pred, target) == (1.0 if ok else 0.0)


def test_as_number_reads_the_answer_after_the_cue():
    assert as_number("3 + 4 = 7 apples, 2 left\n#### 5") == 5.0
    assert as_number("no digits") is None


def test_chrf_matches_sacrebleu_published_values():
    # the numbers the HF `chrf` metric card prints (it wraps sacreBLEU 2)
    hyp = ["The relationship between Obama and Netanyahu is not exactly friendly."]
    ref = ["The ties between Obama and Netanyahu are not particularly friendly."]
    assert chrf(hyp, ref) == pytest.approx(61.576379378113785, abs=1e-9)
    hyp = ["The relationship between cats and dogs is not exactly friendly.",
           "a good bookshop is just a genteel black hole that knows how to read."]
    ref = ["The relationship between dogs and cats is not exactly friendly.",
           "A good bookshop is just a genteel Black Hole that knows how to read."]
    assert chrf(hyp, ref) == pytest.approx(84.64214891738334, abs=1e-9)


CHRF_ALPHABET = list("abcdeéèçàüßøλжд中文 .,!'") + ["\t", "\n", "\u00a0", "\u2003", "  "]


def random_text(rng: random.Random) -> str:
    # lengths around the 6-gram order, and empty strings, are where the edge cases live
    return "".join(rng.choice(CHRF_ALPHABET) for _ in range(rng.choice([0, 0, 1, 2, 3, 5, 6, 7, 12, 30])))


def test_chrf_matches_sacrebleu_on_random_pairs():
    from sacrebleu.metrics import CHRF

    rng = random.Random(0)
    pairs = [(random_text(rng), random_text(rng)) for _ in range(400)]
    hyps, refs = [h for h, _ in pairs], [r for _, r in pairs]
    reference = CHRF()
    assert chrf(hyps, refs) == pytest.approx(reference.corpus_score(hyps, [refs]).score, abs=1e-6)
    # the per-item statistics are sacreBLEU's own, so every resample of a bootstrap is its corpus score too
    theirs = np.array(reference._extract_corpus_statistics(hyps, [refs]), dtype=float)
    assert np.array_equal(np.array([chrf_stats(h, r) for h, r in pairs]), theirs)
    for h, r in pairs[:100]:
        assert chrf([h], [r]) == pytest.approx(reference.sentence_score(h, [r]).score, abs=1e-6)
    for chunk in range(0, 400, 40):  # corpora of 40 (a subset is what a bootstrap resample sums)
        sub_h, sub_r = hyps[chunk:chunk + 40], refs[chunk:chunk + 40]
        assert chrf(sub_h, sub_r) == pytest.approx(reference.corpus_score(sub_h, [sub_r]).score, abs=1e-6)


def test_chrf_matches_sacrebleu_on_the_translation_example():
    from sacrebleu.metrics import CHRF

    rows = [json.loads(line) for line in
            (Path(__file__).parents[1] / "examples/data/translation/en-fr.jsonl").read_text().splitlines()]
    refs = [r["completion"] for r in rows]
    # plausible model replies: exact, near misses, an echo, an empty reply, a reply longer than its reference
    hyps = [refs[0], refs[1].upper(), "merci", rows[3]["prompt"], "", refs[5] + " et au revoir"][:len(refs)]
    assert chrf(hyps, refs) == pytest.approx(CHRF().corpus_score(hyps, [refs]).score, abs=1e-6)


def test_chrf_short_reference_counts_no_hypothesis_ngrams_of_longer_orders():
    # sacreBLEU counts hypothesis n-grams only for orders the reference has: "merci" has no 6-gram
    assert list(chrf_stats("merci beaucoup", "merci")[15:18]) == [0.0, 0.0, 0.0]
    assert list(chrf_stats("merci beaucoup", "merci")[12:15]) == [9.0, 1.0, 1.0]


def test_chrf_edges_and_corpus_from_counts():
    assert chrf(["abc def"], ["abcdef"]) == pytest.approx(100.0)  # whitespace is not counted
    assert chrf(["xyz"], ["abc"]) == 0.0
    assert chrf([""], ["abc"]) == 0.0
    stats = np.array([chrf_stats("le chat dort", "le chat dort bien"), chrf_stats("bonjour", "bonsoir")])
    assert float(chrf_total(stats.sum(0))) == pytest.approx(chrf(["le chat dort", "bonjour"],
                                                                  ["le chat dort bien", "bonsoir"]))
    m = main_metric("chrf", ["le chat dort", "bonjour"], ["le chat dort bien", "bonsoir"])
    assert m.ci_low <= m.value <= m.ci_high


def test_bootstrap_is_seeded_and_degenerate_cases():
    stats = np.array([[1.0], [0.0], [1.0], [1.0]])
    mean = lambda s, n: s[..., 0] / n  # noqa: E731
    assert bootstrap_ci(stats, mean, seed=3) == bootstrap_ci(stats, mean, seed=3)
    assert bootstrap_ci(np.ones((5, 1)), mean) == (1.0, 1.0)


def test_unknown_metric_suggests_the_closest():
    with pytest.raises(TuneoffError, match="accuracy"):
        get_metric("acuracy")


def test_cost_metrics_and_rates():
    values = {v.name: v.value for v in cost_metrics([10, 20, 30, 40], [1, 1, 2, 2], [1.0, 1.0, 2.0, 4.0], [2, 2, 1, 1])}
    assert values["tokens_in_mean"] == 25 and values["tokens_out_mean"] == 1.5
    assert values["latency_p50"] == pytest.approx(1.5)
    assert values["latency_p95"] == pytest.approx(np.percentile([1, 1, 2, 4], 95))
    assert values["seconds_per_item"] == pytest.approx((0.5 + 0.5 + 2 + 4) / 4)
    assert rate("x", [True, False, False, False]).value == 0.25
