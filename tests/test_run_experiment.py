"""`tuneoff run` end to end on a tiny random Llama: every arm kind, curves, consistency, flexibility,
the report, and its numbers recomputed from the stored per-item predictions."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from tuneoff.cli import build_app
from tuneoff.compare import paired_test
from tuneoff.store import Store
from tuneoff.compare.rebuild import comparison_from_store

GOOD = Path(__file__).parent / "fixtures" / "good"
OOD = Path(__file__).parents[1] / "examples" / "data" / "sst2" / "reviews-ood.tsv"


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, tiny_dir):
    tmp_path = tmp_path_factory.mktemp("exp")
    spec = {
        "version": 1, "name": "tiny", "model": str(tiny_dir), "batch_size": 8,
        "task": {"name": "sst2", "train": str(GOOD / "sst2_dev_60.tsv"), "input": "sentence|content",
                 "target": "label", "label_map": {"0": "negative", "1": "positive"},
                 "labels": ["negative", "positive"], "instruction": "positive or negative?",
                 "split_fraction": 0.25, "seed": 1},
        "arms": [
            {"name": "zero-shot", "prompt": {"mode": "score"}},
            {"name": "few-shot", "prompt": {"shots": 2, "demo_selection": "stratified", "mode": "score"}},
            {"name": "cot", "prompt": {"chain_of_thought": True, "max_new_tokens": 6}},
            {"name": "lora", "finetune": {"method": "lora", "n_train": 16, "epochs": 1, "batch_size": 8,
                                          "learning_rate": 1e-3}},
            {"name": "lora+few", "finetuned": "lora", "prompt": {"shots": 2, "mode": "score"}},
        ],
        "curves": {"shots": [0, 1], "n_train": [8, 16]},
        "consistency": {"arms": ["zero-shot"], "paraphrases": ["sentiment?"]},
        "flexibility": {"task": {"name": "banking", "test": str(GOOD / "banking77_test_60.csv"), "input": "text",
                                 "target": "category", "labels": str(GOOD / "banking77_categories.json"),
                                 "n_test": 6}},
        "ood": {"name": "reviews", "test": str(OOD), "n_test": 6},
        "probe": {"items": 3, "concurrency": 2},
        "constraints": {"monthly_requests": 1000},
        "output": str(tmp_path / "out"),
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(spec))
    db = tmp_path / "store.sqlite"
    result = CliRunner().invoke(build_app(), ["run", str(path), "--store", str(db)], terminal_width=200)
    assert result.exit_code == 0, result.output
    return path, db, result.output


def test_run_writes_a_report_whose_numbers_match_the_store(experiment):
    path, db, output = experiment
    assert "Recommendation:" in output
    report = json.loads((path.parent / "out" / "report.json").read_text())
    assert [a["name"] for a in report["arms"]] == ["zero-shot", "few-shot", "cot", "lora", "lora+few"]

    store = Store(db)
    for arm in report["arms"]:
        rows = store.predictions(arm["run_id"])
        correct = [float(r["target"] == r["prediction"]) for r in rows]
        assert arm["metric"] == pytest.approx(np.mean(correct))  # recomputed from per-item predictions
        assert arm["ci_low"] <= arm["metric"] <= arm["ci_high"]
        assert len(rows) == 15  # every arm scored on the same 15 test items
    by_name = {a["name"]: a for a in report["arms"]}
    assert by_name["lora"]["trainable_parameters"] > 0
    assert by_name["lora"]["trainable_parameters"] < by_name["lora"]["total_parameters"]
    assert by_name["zero-shot"]["trainable_parameters"] == 0
    assert by_name["zero-shot"]["agreement"] is not None
    assert set(by_name["lora"]["flexibility"]) == {"task", "score", "base_score", "drop", "weights_of"}
    # the combined arm runs on lora's weights: their flexibility is lora's, said to be so
    assert by_name["lora+few"]["flexibility"] == {**by_name["lora"]["flexibility"], "weights_of": "lora"}
    curves = {c["axis"]: [p[0] for p in c["points"]] for c in report["curves"]}
    assert curves == {"shots": [0, 1], "n_train": [8, 16]}

    comparison = comparison_from_store(store, 1)
    best_prompt = max((a for a in comparison.arms if a.kind == "prompt"), key=lambda a: a.metric)
    best_tuned = max((a for a in comparison.arms if a.kind != "prompt"), key=lambda a: a.metric)
    assert report["test"]["p_value"] == pytest.approx(paired_test(best_prompt, best_tuned).p_value)
    html = (path.parent / "out" / "report.html").read_text()
    assert "Head to head" in html and html.count("<svg") >= 4
    # every timed phase has its peak resident memory beside it; the whole run's is the largest
    summary = json.loads(store.experiment(1)["summary_json"])
    assert set(summary["peak_rss_mb"]) == set(summary["phases"]) and summary["peak_rss_mb"]["total"] > 100
    assert max(summary["peak_rss_mb"].values()) == summary["peak_rss_mb"]["total"]
    assert comparison.peak_rss_mb == summary["peak_rss_mb"]


def test_every_arm_is_probed_and_scored_out_of_domain(experiment):
    path, db, output = experiment
    report = json.loads((path.parent / "out" / "report.json").read_text())
    store = Store(db)
    rows = dict(report["rows"])
    for arm in report["arms"]:
        probe = arm["probe"]
        assert probe["items"] == 3 and probe["concurrency"] == 2 and len(probe["single_seconds"]) == 3
        assert arm["latency_p95"] == probe["single_p95"] and arm["latency_source"] == "serving probe"
        assert "per single request (serving probe, 3 requests)" in rows["Latency p50 / p95"][arm["name"]]
        ood = arm["ood"]
        assert ood["task"] == "reviews" and ood["n"] == 6
        assert ood["drop"] == pytest.approx(arm["metric"] - ood["value"])
        assert rows["Out of domain"][arm["name"]].startswith(f"reviews: accuracy {ood['value']:.3f}")
    links = store.linked_runs(1, "ood")
    assert len(links) == 5 and all(store.run(link["run_id"])["split"] == "ood" for link in links)
    assert "out of domain (reviews)" in output and "serving probe" in output
    html = (path.parent / "out" / "report.html").read_text()
    assert "Out of domain" in html and 'id="one-off"' in html


def test_rerun_reuses_the_store_and_the_trained_models(experiment):
    path, db, _ = experiment
    again = CliRunner().invoke(build_app(), ["run", str(path), "--store", str(db)], terminal_width=200)
    assert again.exit_code == 0, again.output
    assert "reusing the trained model" in again.output
    assert " 0 new calls" in again.output and "cached" in again.output
    store = Store(db)
    assert store.db.execute("SELECT COUNT(*) FROM runs WHERE kind='finetune'").fetchone()[0] == 2  # lora@8, lora@16


def test_a_smaller_test_split_reuses_the_trained_models(experiment, tmp_path):
    """The fine-tunes depend on the training data, the arm and the prompt format, not on how many
    test items are scored: shrinking the test split must not retrain."""
    path, db, _ = experiment
    spec = yaml.safe_load(path.read_text())
    spec["task"]["n_test"] = 10
    smaller = path.parent / "smaller.yaml"
    smaller.write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(build_app(), ["run", str(smaller), "--store", str(db)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "reusing the trained model" in result.output and ": train" not in result.output
    assert Store(db).db.execute("SELECT COUNT(*) FROM runs WHERE kind='finetune'").fetchone()[0] == 2


def test_report_rerenders_from_the_store_alone(experiment, tmp_path):
    path, db, _ = experiment
    first = json.loads((path.parent / "out" / "report.json").read_text())
    out = tmp_path / "again"
    result = CliRunner().invoke(build_app(), ["report", str(first["experiment_id"]), "--store", str(db),
                                              "--output", str(out)])
    assert result.exit_code == 0, result.output
    second = json.loads((out / "report.json").read_text())
    assert second["arms"] == first["arms"] and second["rows"] == first["rows"]


def test_report_exports_every_item_with_raw_outputs_from_the_store(experiment, tmp_path):
    path, db, _ = experiment
    first = json.loads((path.parent / "out" / "report.json").read_text())
    out = tmp_path / "items.jsonl"
    result = CliRunner().invoke(build_app(), ["report", str(first["experiment_id"]), "--store", str(db),
                                              "--output", str(tmp_path / "r"), "--items", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    store = Store(db)
    arms = {a["name"]: a for a in first["arms"]}  # an earlier test may have re-run the experiment: read its own
    cot = {r["example_id"]: r for r in store.predictions(arms["cot"]["run_id"])}
    assert [r["id"] for r in rows] == arms["zero-shot"]["item_ids"] and set(rows[0]["arms"]) == set(arms)
    for row in rows:  # the chain of thought's raw generation and its parsed answer, as stored
        cell = row["arms"]["cot"]
        assert cell["output"] == cot[row["id"]]["output"] and cell["prediction"] == cot[row["id"]]["prediction"]
        assert cell["score"] == (1.0 if cell["prediction"] == row["target"] else 0.0)
    html = (tmp_path / "r" / "report.html").read_text()
    assert 'id="explorer-data"' in html and all(json.dumps(r["id"]) in html for r in rows)


def test_the_report_says_where_it_ran(experiment):
    import torch

    path, db, _ = experiment
    report = json.loads((path.parent / "out" / "report.json").read_text())
    env = report["environment"]  # recorded by the run, not by whoever renders the report later
    assert env["torch"] == torch.__version__ and env["tuneoff"] and env["cpu"] is not None
    html = (path.parent / "out" / "report.html").read_text()
    assert f"experiment <b>{report['experiment_id']}</b>" in html and torch.__version__ in html
    assert report["settings"]["arms.lora.finetune.method"] == '"lora"'
    assert report["settings"]["lora: training data + options (fingerprint)"]


def test_bad_experiment_names_file_line_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nname: x\ntask:\n  name: t\n  train: a.tsv\narms:\n  - name: z\n    prompt:\n"
                    "      shots: two\n")
    result = CliRunner().invoke(build_app(), ["run", str(path), "--store", str(tmp_path / "s.db")])
    assert result.exit_code == 1
    assert f"{path}:9: field 'arms[0].prompt.shots': expected int" in result.output
    assert "Traceback" not in result.output


SST2_TASK = {"name": "sst2", "train": str(GOOD / "sst2_dev_60.tsv"), "input": "sentence|content", "target": "label",
             "label_map": {"0": "negative", "1": "positive"}, "labels": ["negative", "positive"],
             "instruction": "positive or negative?"}


def run_spec(spec: dict, tmp_path) -> Store:
    """Write an experiment, `tuneoff run` it into a fresh store, and return the store."""
    path = tmp_path / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "output": str(tmp_path / "out"), **spec}))
    db = tmp_path / "store.sqlite"
    result = CliRunner().invoke(build_app(), ["run", str(path), "--store", str(db)], terminal_width=200)
    assert result.exit_code == 0, result.output
    return Store(db)


def test_an_arms_own_paraphrases_are_probed(tiny_dir, tmp_path):
    """`paraphrases:` on a prompt arm is honoured: the arm gets a consistency probe over its own
    paraphrases, even with no experiment-level `consistency:` section."""
    store = run_spec({"name": "para", "model": str(tiny_dir), "batch_size": 8, "task": {**SST2_TASK, "n_test": 6},
                      "arms": [{"name": "plain", "prompt": {"mode": "score"}},
                               {"name": "probed", "prompt": {"mode": "score",
                                                             "paraphrases": ["sentiment?", "good or bad?"]}}]},
                     tmp_path)
    links = store.linked_runs(1, "consistency")
    assert [link["arm"] for link in links] == ["probed"]
    probe = json.loads(store.run(links[0]["run_id"])["spec_json"])
    assert probe["paraphrases"] == ["sentiment?", "good or bad?"]
    arms = {a.name: a for a in comparison_from_store(store, 1).arms}
    assert arms["probed"].agreement is not None and arms["plain"].agreement is None


def test_repeats_rerun_arms_with_new_seeds_and_tuning_is_reported(tiny_dir, tmp_path):
    """`repeats: 2`: a prompt arm with random demos draws new demos; a fine-tune arm retrains with
    a new seed; the report carries each arm's runs, and the verdict says whether the budgets match."""
    store = run_spec({"name": "rep", "model": str(tiny_dir), "batch_size": 8, "repeats": 2,
                      "task": {**SST2_TASK, "n_test": 8, "split_fraction": 0.25},
                      "arms": [{"name": "random-few", "prompt": {"shots": 2, "demo_selection": "random",
                                                                 "mode": "score"}},
                               {"name": "scored", "prompt": {"mode": "score"}},  # nothing random: 1 run
                               {"name": "lora", "finetune": {"method": "lora", "n_train": 8, "epochs": 1,
                                                             "batch_size": 8}}]}, tmp_path)
    assert sorted(link["arm"] for link in store.linked_runs(1, "repeat")) == ["lora", "random-few"]
    assert len(store.linked_runs(1, "repeat_train")) == 1
    demos = {json.loads(r["extra_json"])["demos"][0] for link in store.linked_runs(1, "arm") + store.linked_runs(1, "repeat")
             if link["arm"] == "random-few" for r in store.predictions(link["run_id"])[:1]}
    assert len(demos) == 2  # a new seed drew other demos
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    repeated = [a for a in report["arms"] if a["name"] != "scored"]
    assert all(len(a["runs"]) == 2 and a["metric_std"] is not None for a in repeated)
    scored = next(a for a in report["arms"] if a["name"] == "scored")
    assert scored["runs"] == [] and scored["deterministic"] is True
    assert "deterministic (1 run" in dict(report["rows"])["Performance"]["scored"]
    assert any("neither random-few nor lora was tuned on dev" in r for r in report["verdict"]["reasons"])
