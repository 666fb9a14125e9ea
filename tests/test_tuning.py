"""Tuning budgets for fine-tune arms: candidates, rungs, epoch-end selection by the dev metric
(best epoch restored, pause and resume exact), and a bad learning rate corrected end to end."""

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

from test_finetune import arm, toy_task, trained_tensors
from tuneoff.cli import build_app
from tuneoff.config.experiment import ArmEntry
from tuneoff.config.tuning import FinetuneTuning, grid
from tuneoff.errors import TuneoffError
from tuneoff.finetune import run_finetune
from tuneoff.finetune.run import Selection
from tuneoff.store import Store
from tuneoff.experiment.tuning import candidates, rungs


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def test_grid_is_the_product_of_listed_options_nested_too():
    combos = grid({"method": "lora", "learning_rate": [1e-4, 1e-3], "lora": {"r": [8, 16], "target_modules": ["q"]}})
    assert len(combos) == 4
    assert {(c["learning_rate"], c["lora"]["r"]) for c in combos} == {(1e-4, 8), (1e-4, 16), (1e-3, 8), (1e-3, 16)}
    assert all(c["lora"]["target_modules"] == ["q"] for c in combos)  # a module list is one value
    assert grid({"epochs": 1}) == [{"epochs": 1}] and grid(None) == [{}]
    with pytest.raises(TuneoffError, match="empty list"):
        grid({"learning_rate": []})


def test_unlisted_learning_rate_gets_multiples_of_the_methods_default():
    spec = FinetuneTuning(learning_rates=[0.5, 2.5])
    lrs = [c["learning_rate"] for c in candidates(ArmEntry("a", finetune={"method": "lora"}), spec)]
    assert lrs == [1e-4, 2e-4, 5e-4]
    listed = candidates(ArmEntry("a", finetune={"learning_rate": [1e-7, 1e-2]}), spec)
    assert [c["learning_rate"] for c in listed] == [1e-7, 1e-2]


def test_rungs_double_up_to_max_epochs():
    assert rungs(4, 4, True) == [1, 2, 4] and rungs(3, 3, True) == [1, 2, 3]
    assert rungs(1, 3, True) == [3] and rungs(4, 3, False) == [3]


def test_dev_metric_selects_the_best_epoch_and_stops_early(tiny_model_dir, tmp_path):
    scripted = iter([0.3, 0.9, 0.5, 0.4])  # best after epoch 2; epoch 3 is worse: patience 1 stops there
    snapshots = {}

    def scorer(model, epoch, step):
        snapshots[epoch] = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        assert not model.training  # scored in eval mode
        return next(scripted)

    result = run_finetune(toy_task(), arm(method="full", epochs=4), str(tiny_model_dir), tmp_path / "sel",
                          Store(tmp_path / "r.sqlite"), selection=Selection(scorer, patience=1))
    stats = result.stats
    assert stats.stopped_early and stats.epochs == 3 and stats.best_dev_metric == 0.9
    assert [m[0] for m in stats.dev_metrics] == [1, 2, 3] and stats.best_step == stats.dev_metrics[1][1]
    saved = trained_tensors(result.output_dir)
    assert all(torch.equal(saved[n], snapshots[2][n]) for n in saved)  # the output holds epoch 2's weights
    assert not all(torch.equal(saved[n], snapshots[3][n]) for n in saved)


def test_a_paused_run_resumes_to_the_same_weights(tiny_model_dir, tmp_path):
    store, a = Store(tmp_path / "r.sqlite"), arm(method="lora", epochs=2, lora={"r": 4, "dropout": 0.2})
    rising = lambda model, epoch, step: float(epoch)  # noqa: E731 (the last epoch is the best)
    straight = run_finetune(toy_task(), a, str(tiny_model_dir), tmp_path / "straight", store,
                            selection=Selection(rising))
    paused = run_finetune(toy_task(), a, str(tiny_model_dir), tmp_path / "paused", store,
                          selection=Selection(rising, pause_at_epoch=1))
    assert paused.paused and not (tmp_path / "paused" / "tuneoff.json").exists()
    assert store.run(paused.run_id)["status"] == "paused"
    resumed = run_finetune(toy_task(), a, str(tiny_model_dir), tmp_path / "paused", store, resume=True,
                           selection=Selection(rising))
    assert resumed.run_id == paused.run_id and resumed.stats.epochs == 2
    x, y = trained_tensors(straight.output_dir), trained_tensors(resumed.output_dir)
    assert all(torch.allclose(x[n], y[n], rtol=0, atol=1e-7) for n in x)


def one_label_task(tmp_path):
    """Every answer is `positive`; the untrained tiny model prefers `negative` (dev accuracy 0):
    only a learning rate that moves the weights can score."""
    words = ["the movie was great", "a dull boring film", "what a waste of time", "the acting was wonderful"]
    rows = [{"prompt": f"{words[i % 4]} {i % 7}", "completion": "positive"} for i in range(60)]
    path = tmp_path / "one.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_a_bad_learning_rate_is_corrected_by_tuning(tiny_model_dir, tmp_path):
    spec = {"version": 1, "name": "tune", "model": str(tiny_model_dir), "batch_size": 8,
            "task": {"name": "toy", "train": str(one_label_task(tmp_path)), "labels": ["negative", "positive"],
                     "instruction": "positive or negative?", "split_fraction": 0.2},
            "arms": [{"name": "full", "finetune": {"method": "full", "learning_rate": [1e-7, 1e-2],
                                                   "batch_size": 4, "max_length": 64}}],
            "tuning": {"finetune": {"max_epochs": 2}}, "output": str(tmp_path / "out")}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(spec))
    db = tmp_path / "s.sqlite"
    result = CliRunner().invoke(build_app(), ["run", str(path), "--store", str(db)], terminal_width=200)
    assert result.exit_code == 0, result.output
    store = Store(db)
    tuning = json.loads(store.db.execute("SELECT summary_json FROM runs WHERE kind='tuning'").fetchone()[0])
    assert tuning["chosen"]["learning_rate"] == 1e-2 and tuning["dev_metric"] == 1.0
    bad = next(t for t in tuning["trials"] if t["options"]["learning_rate"] == 1e-7)
    assert bad["best"] == 0.0 and bad["epochs"] == 1 and not bad["finished"]  # dropped after the first rung
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["arms"][0]["metric"] == 1.0  # the test split, scored once with the chosen configuration
    again = CliRunner().invoke(build_app(), ["run", str(path), "--store", str(db)], terminal_width=200)
    assert again.exit_code == 0 and "reusing the tuned model" in again.output


def test_listed_candidates_without_tuning_are_refused(tmp_path):
    from tuneoff.config.experiment import load_experiment

    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "name": "x", "task": {"name": "t", "train": "a.jsonl"},
                                    "arms": [{"name": "ft", "finetune": {"learning_rate": [1e-4, 1e-3]}}]}))
    with pytest.raises(TuneoffError, match="needs the experiment's `tuning:` section"):
        load_experiment(path)
