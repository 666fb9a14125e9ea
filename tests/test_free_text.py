"""Free text end to end on a tiny random Llama: DialogSum-style items with three reference summaries,
reference metrics from sacreBLEU and rouge-score on the stored replies (multi-reference included),
the repeats CI on the metric's own scale, and the label rows saying "n/a (free text)"."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from tuneoff.cli import build_app
from tuneoff.compare.rebuild import comparison_from_store
from tuneoff.store import Store

GOOD = Path(__file__).parent / "fixtures" / "good"
TASK = {"name": "dialogsum", "train": str(GOOD / "dialogsum_32.jsonl"), "input": "dialogue",
        "target": ["summary1", "summary2", "summary3"], "metric": ["chrf", "rougeL", "bleu", "ter", "rouge1"],
        "instruction": "Summarise the dialogue.", "split_fraction": 0.25, "seed": 0}


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_dir):
    tmp = tmp_path_factory.mktemp("free")
    spec = {"version": 1, "name": "free", "model": str(tiny_dir), "batch_size": 8, "repeats": 2,
            "task": TASK, "probe": {"items": 0},
            "arms": [{"name": "sampled", "prompt": {"max_new_tokens": 8, "temperature": 1.0}},
                     {"name": "greedy", "prompt": {"max_new_tokens": 6}},
                     {"name": "lora", "finetune": {"method": "lora", "n_train": 8, "epochs": 1, "batch_size": 8}}],
            "output": str(tmp / "out")}
    path = tmp / "free.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(build_app(), ["run", str(path), "--store", str(tmp / "s.sqlite")], terminal_width=200)
    assert result.exit_code == 0, result.output
    return Store(tmp / "s.sqlite"), tmp


def stored(store: Store, arm: str):
    link = next(link for link in store.linked_runs(1, "arm") if link["arm"] == arm)
    rows = store.predictions(link["run_id"])
    refs = [json.loads(r["extra_json"])["references"] for r in rows]
    return [r["prediction"] or "" for r in rows], refs, store.metrics(link["run_id"])


def test_reference_metrics_equal_the_libraries_own_on_the_stored_replies(run):
    from rouge_score.rouge_scorer import RougeScorer
    from sacrebleu.metrics import BLEU, CHRF, TER

    store, _ = run
    hyps, refs, metrics = stored(store, "greedy")
    assert all(len(r) == 3 for r in refs)  # every reference column kept
    streams = [[r[k] for r in refs] for k in range(3)]
    assert metrics["chrf"]["value"] == pytest.approx(CHRF().corpus_score(hyps, streams).score, abs=1e-9)
    assert metrics["bleu"]["value"] == pytest.approx(BLEU().corpus_score(hyps, streams).score, abs=1e-9)
    assert metrics["ter"]["value"] == pytest.approx(TER().corpus_score(hyps, streams).score, abs=1e-9)
    scorer = RougeScorer(["rougeL", "rouge1"], use_stemmer=True)
    for kind in ("rougeL", "rouge1"):
        theirs = np.mean([scorer.score_multi(r, h)[kind].fmeasure for h, r in zip(hyps, refs)])
        assert metrics[kind]["value"] == pytest.approx(100 * theirs, abs=1e-9)
    for name in ("chrf", "bleu", "ter", "rougeL"):
        assert metrics[name]["ci_low"] <= metrics[name]["value"] <= metrics[name]["ci_high"]


def test_repeats_ci_is_on_the_metric_scale(run):
    """The bug this guards: with repeats the value was 0-100 chrF and the CI 0-1 ("38.2 [0.35, 0.41]")."""
    store, _ = run
    c = comparison_from_store(store, 1)
    repeated = [a for a in c.arms if a.runs]
    assert {a.name for a in repeated} == {"sampled", "lora"}  # greedy is deterministic: one run says it all
    for a in repeated:
        assert len(a.runs) == 2 and a.metric == pytest.approx(np.mean(a.runs))
        assert a.ci_low <= a.metric <= a.ci_high, (a.name, a.metric, a.ci_low, a.ci_high)
        assert a.ci_high > 1.0 or a.metric <= 1.0  # a chrF above 1 has a CI above 1 too
    # the headline test resamples items and seeds and recomputes chrF itself: its difference is the arms'
    # chrF difference on the chrF scale, not a difference of 0-1 item scores
    assert c.test is not None and c.test.test.startswith("paired bootstrap over items and seeds")
    a, b = {x.name: x for x in c.arms}[c.test.a], {x.name: x for x in c.arms}[c.test.b]
    assert c.test.difference == pytest.approx(b.metric - a.metric, abs=1e-6)


def test_fine_tune_max_length_comes_from_the_data(run):
    from tuneoff.records import TrainStats

    store, _ = run
    link = next(link for link in store.linked_runs(1, "finetune") if link["arm"] == "lora")
    stats = TrainStats.from_json(store.run(link["run_id"])["summary_json"])
    assert 0 < stats.max_length <= 512 and stats.truncated == 0  # the longest example fits the tiny model
    row = dict(comparison_from_store(store, 1).rows)["Data requirement"]["lora"]
    assert f"0.0% truncated by max_length; longest {stats.max_length} tokens" in row


def test_free_text_rows_say_what_was_not_computed(run):
    store, tmp = run
    c = comparison_from_store(store, 1)
    rows = dict(c.rows)
    assert set(rows["Bias & hallucinations"].values()) == {"n/a (free text)"}
    assert "cut at the generation cap" in rows["Length & truncation"]["greedy"]
    assert "ter (lower is better)" in rows["  ter"]["greedy"]
    assert "paired bootstrap p=" in rows["  rougeL"]["greedy"] or "paired bootstrap p=" in rows["  rougeL"]["sampled"]
    assert "hallucinated labels" not in (tmp / "out" / "report.md").read_text()
    assert "Written targets at $1.00 each" in (tmp / "out" / "report.html").read_text()  # priced by kind


def test_a_missing_or_empty_reference_names_file_line_and_field(tmp_path):
    from tuneoff.data import ColumnMapping, load_dataset
    from tuneoff.errors import DataError

    path = tmp_path / "refs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"dialogue": "a", "summary1": "x", "summary2": "y"},
        {"dialogue": "b", "summary1": "x"},
        {"dialogue": "c", "summary1": "x", "summary2": " "},
        {"dialogue": "d", "summary": ["x", "y"]}]) + "\n")
    with pytest.raises(DataError) as error:
        load_dataset(path, ColumnMapping(input="dialogue", target="summary1,summary2"))
    assert "refs.jsonl:2" in str(error.value) and "summary2" in str(error.value)
    found = {(p.line, p.field, p.kind) for p in error.value.problems}
    assert {(2, "summary2", "MissingField"), (3, "summary2", "EmptyField")} <= found
    listed = tmp_path / "listed.jsonl"
    listed.write_text(json.dumps({"dialogue": "d", "summary": ["x", "y"]}) + "\n")
    ex = load_dataset(listed, ColumnMapping(input="dialogue", target="summary"))[0]
    assert ex.target == "x" and ex.refs() == ("x", "y")


def test_generation_cap_comes_from_the_training_targets_unless_set():
    from tuneoff.data import Example
    from tuneoff.prompting.arm import PromptArm, TaskContext, generation_cap

    pool = tuple(Example(f"d{i}", " ".join(["w"] * (10 + i))) for i in range(100))  # 10..109 words
    words = lambda text: len(text.split())  # noqa: E731 (a tokenizer of one token per word)
    free = TaskContext(name="t", metric="rougeL", pool=pool)
    assert generation_cap(PromptArm(name="a"), free, words) == 136  # 1.25 x p95 (105 words) = 131.25, up to a multiple of 8
    assert generation_cap(PromptArm(name="a", max_new_tokens=20), free, words) == 20
    labelled = TaskContext(name="t", labels=("a", "b"), pool=pool)
    assert generation_cap(PromptArm(name="a"), labelled, words) == 32


def test_free_text_consistency_is_measured_with_the_metric():
    from tuneoff.evaluate.consistency import agreement, metric_agreement

    a = ["the cat sat on the mat", "a dog barked at night"]
    b = ["the cat sat on a mat", "a dog barked at night"]
    assert agreement([a, b]) == 0.5  # identical strings: one item of two
    assert metric_agreement("chrf", [a, a]) == pytest.approx(1.0)
    assert 0.8 < metric_agreement("chrf", [a, b]) < 1.0  # near-identical summaries are near-identical
    assert metric_agreement("ter", [a, a]) == pytest.approx(1.0)  # lower-is-better: no edits = alike


def test_free_text_on_accuracy_and_long_references_are_warned():
    from tuneoff.data import Example
    from tuneoff.evaluate.lengths import reference_warnings
    from tuneoff.metrics import free_text_warning

    assert "rougeL" in free_text_warning("accuracy", None)
    assert free_text_warning("accuracy", ("a", "b")) is None and free_text_warning("chrf", None) is None

    class Words:
        context_length = 40

        def count_tokens(self, text):
            return len(text.split())

    items = [Example("d", " ".join(["w"] * n)) for n in (5, 10, 30, 50)]
    warnings = reference_warnings(Words(), items, cap=20)
    assert "50% of the references are longer than the generation cap (20 tokens)" in warnings[0]
    assert "25% of the references are longer than the model's context (40 tokens)" in warnings[1]
