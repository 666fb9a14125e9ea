"""Integrity in one process, fast: a chunk's calls and predictions land together, trained models
reused across stores link this store's runs, the experiment's model is the one `eval` uses,
missing files fail at load with file:line, and a data file deleted mid-experiment is one clear
error that leaves the store sound and resumable."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from typer.testing import CliRunner

from tuneoff.cli import build_app
from tuneoff.config.experiment import load_experiment
from tuneoff.errors import TuneoffError
from tuneoff.store import Store

from .helpers import TALLY, make_project, query, store_is_sound


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("integrity")
    paths = make_project(root, n=48)
    exp = yaml.safe_load(paths["experiment"].read_text())
    exp["arms"] = [{"name": "zero", "prompt": {"mode": "score"}},
                   {"name": "lora", "finetune": {"method": "lora", "n_train": 8, "epochs": 1, "batch_size": 8,
                                                 "learning_rate": 1e-3}}]
    paths["experiment"].write_text(yaml.safe_dump(exp))
    return paths


def tuneoff(*args) -> str:
    result = CliRunner().invoke(build_app(), [str(a) for a in args], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def test_a_chunk_killed_between_its_calls_and_predictions_leaves_neither(project, tmp_path, monkeypatch):
    """Score calls are reusable only with their predictions' log-probs: a call stored without them
    used to be computed and stored again by the rerun."""
    store = tmp_path / "runs.sqlite"
    real = Store.add_predictions

    def dies(self, run_id, rows):
        rows = list(rows)
        real(self, run_id, rows)
        raise KeyboardInterrupt  # as if killed right after the predictions' INSERT, before COMMIT

    monkeypatch.setattr(Store, "add_predictions", dies)
    TALLY["faults"] += 1
    result = CliRunner().invoke(build_app(), ["eval", str(project["experiment"]), "--arm", "zero", "--store", str(store)])
    assert result.exit_code == 130, result.output
    monkeypatch.undo()
    assert query(store, "SELECT count(*) FROM calls") == [(0,)]  # rolled back together with its predictions
    tuneoff("eval", project["experiment"], "--arm", "zero", "--store", store)
    store_is_sound(store)


def test_eval_of_an_experiment_uses_its_model(project, tmp_path):
    store = tmp_path / "runs.sqlite"
    tuneoff("eval", project["experiment"], "--arm", "zero", "--store", store)
    assert query(store, "SELECT model FROM runs WHERE kind='eval'") == [(str(project["model"]),)]


def test_trained_models_reused_across_stores_link_this_stores_run(project, tmp_path):
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    tuneoff("run", project["experiment"], "--store", a)
    (trained,), = query(a, "SELECT id FROM runs WHERE kind='finetune'")
    other = Store(b)  # store B already has a run with that id: an unrelated one
    for _ in range(trained):
        other.start_run("ask", arm="unrelated")
    other.close()
    TALLY["faults"] += 1
    tuneoff("run", project["experiment"], "--store", b)  # used to fail on a FOREIGN KEY or link run `trained`
    linked = query(b, "SELECT r.kind, r.arm, r.status FROM experiment_runs l JOIN runs r ON r.id = l.run_id "
                      "WHERE l.role='finetune'")
    assert linked == [("finetune", "lora", "done")]
    report = json.loads((project["root"] / "out" / "report.json").read_text())
    assert next(a for a in report["arms"] if a["name"] == "lora")["trainable_parameters"] > 0
    store_is_sound(b)


def _refused_at_load(path, match):
    with pytest.raises(TuneoffError, match=match) as info:
        load_experiment(path)
    assert info.value.file == str(path) and info.value.line is not None
    return info.value


def test_missing_labels_file_and_model_fail_at_load_with_their_line(project, tmp_path):
    exp = yaml.safe_load(project["experiment"].read_text())
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({**exp, "task": {**exp["task"], "labels": "nope.json"}}))
    assert _refused_at_load(path, "label file not found").field == "task.labels"
    path.write_text(yaml.safe_dump({**exp, "model": str(tmp_path / "no-model")}))
    assert _refused_at_load(path, "no model at").field == "model"
    path.write_text(yaml.safe_dump({**exp, "model": "embedded:nope"}))
    assert _refused_at_load(path, "unknown embedded model").field == "model"
    TALLY["inputs"] += 3


def test_a_data_file_deleted_mid_experiment_is_one_clear_error(project, tmp_path, monkeypatch):
    import tuneoff.experiment.arms as runner

    flex = tmp_path / "flex.jsonl"
    shutil.copy(project["data"], flex)
    exp = yaml.safe_load(project["experiment"].read_text())
    exp["arms"] = exp["arms"][:1]
    exp["flexibility"] = {"task": {"name": "flex", "test": str(flex), "labels": ["negative", "positive"]}}
    exp["output"] = str(tmp_path / "out")
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    store = tmp_path / "runs.sqlite"
    real = runner.evaluate_arm

    def then_delete(*args, **kwargs):
        run_id = real(*args, **kwargs)
        flex.unlink(missing_ok=True)  # someone removes the file while the experiment runs
        return run_id

    monkeypatch.setattr(runner, "evaluate_arm", then_delete)
    TALLY["faults"] += 1
    result = CliRunner().invoke(build_app(), ["run", str(path), "--store", str(store)])
    assert result.exit_code == 1 and "no such file" in result.output and str(flex) in result.output, result.output
    assert "Traceback" not in result.output
    store_is_sound(store)
    monkeypatch.undo()
    shutil.copy(project["data"], flex)
    calls = query(store, "SELECT count(*) FROM calls")[0][0]
    tuneoff("run", path, "--store", store)
    store_is_sound(store)  # the rerun answered the stored calls from the store, not twice
    assert query(store, "SELECT count(*) FROM calls")[0][0] > calls


def test_prompts_longer_than_the_context_are_warned_about(project, tmp_path):
    """The tiny Llama has 512 positions; an input of ~700 tokens used to be scored in silence."""
    data = tmp_path / "long.jsonl"
    rows = [{"input": "the movie was great " * (200 if i % 2 else 2), "target": "positive", "id": f"r{i}"}
            for i in range(4)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = tmp_path / "task.yaml"
    task.write_text(yaml.safe_dump({"name": "long", "test": str(data), "labels": ["negative", "positive"]}))
    arm = tmp_path / "arm.yaml"
    arm.write_text("name: zero\nmode: score\n")
    TALLY["inputs"] += 2
    out = tuneoff("eval", task, "--arm", arm, "--model", project["model"], "--store", tmp_path / "s.sqlite")
    assert "2 prompt(s) of zero are longer than the model's context (512 tokens)" in out


HOLD = "import sys, time; from pathlib import Path; from tuneoff.locks import hold\n" \
       "with hold(Path(sys.argv[1]), 'busy'):\n    print('held', flush=True); time.sleep(60)"


@pytest.fixture
def held(tmp_path):
    """Hold a lock file from another process, as a second `tuneoff` would."""
    import os
    import subprocess
    import sys

    from .helpers import ROOT

    procs = []

    def hold_it(path):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], env=env, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "held"
        procs.append(proc)
        return proc.pid

    yield hold_it
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_second_run_of_an_experiment_is_refused_while_one_runs(project, tmp_path, held):
    pid = held(project["root"] / "out" / ".run.lock")
    TALLY["faults"] += 1
    result = CliRunner().invoke(build_app(), ["run", str(project["experiment"]), "--store", str(tmp_path / "s.sqlite")])
    assert result.exit_code == 1 and f"another tuneoff process (pid {pid})" in result.output, result.output


def test_a_second_training_into_one_folder_is_refused(project, tmp_path, held):
    out = tmp_path / "ft"
    pid = held(tmp_path / ".ft.lock")
    TALLY["faults"] += 1
    result = CliRunner().invoke(build_app(), ["finetune", str(project["task"]), "--arm", str(project["finetune"]),
                                              "--output", str(out), "--model", str(project["model"]),
                                              "--store", str(tmp_path / "s.sqlite")])
    assert result.exit_code == 1 and f"another tuneoff process (pid {pid})" in result.output, result.output
    assert not out.exists()


def test_a_data_error_leaves_no_experiment_row(project, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "a", "target": "positive"}\n{"input": "b"\n')
    exp = yaml.safe_load(project["experiment"].read_text())
    exp["task"] = {**exp["task"], "train": str(bad)}
    exp["output"] = str(tmp_path / "out")
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    store = tmp_path / "s.sqlite"
    TALLY["inputs"] += 1
    result = CliRunner().invoke(build_app(), ["run", str(path), "--store", str(store)])
    assert result.exit_code == 1 and "InvalidJSON" in result.output and f"{bad}:2" in result.output, result.output
    assert query(store, "SELECT count(*) FROM experiments") == [(0,)]
