"""`tuneoff diff A B`: two runs of a tiny experiment with one setting changed show that setting and the
items that flipped (recomputed here from the stored predictions); a changed test set is said, not compared."""

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tuneoff.cli import build_app
from tuneoff.compare.diff import diff_experiments, load_side
from tuneoff.store import Store

GOOD = Path(__file__).parent / "fixtures" / "good"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_dir):
    """Experiment 1 as written, 2 with the few-shot arm's label scores calibrated; 3 on fewer test items."""
    tmp = tmp_path_factory.mktemp("diff")
    spec = {"version": 1, "name": "tiny-diff", "model": str(tiny_dir), "batch_size": 8, "output": str(tmp / "out"),
            "task": {"name": "sst2", "train": str(GOOD / "sst2_dev_60.tsv"), "input": "sentence|content",
                     "target": "label", "label_map": {"0": "negative", "1": "positive"},
                     "labels": ["negative", "positive"], "instruction": "positive or negative?",
                     "split_fraction": 0.25, "seed": 1},
            "arms": [{"name": "zero-shot", "prompt": {"mode": "score"}},
                     {"name": "few-shot", "prompt": {"shots": 4, "demo_selection": "stratified", "mode": "score"}}],
            "probe": {"items": 0}}
    path = tmp / "exp.yaml"
    path.write_text(yaml.safe_dump(spec))
    db = tmp / "store.sqlite"
    for overrides in ([], ["--set", "arms.few-shot.prompt.calibration=contextual"], ["--set", "task.n_test=8"]):
        result = CliRunner().invoke(build_app(), ["run", str(path), "--store", str(db), *overrides], terminal_width=200)
        assert result.exit_code == 0, result.output
        (tmp / "out" / "report.json").rename(tmp / f"report-{len(list(tmp.glob('report-*.json'))) + 1}.json")
    return tmp, db


def stored_scores(store: Store, experiment_id: int, arm: str) -> dict[str, float]:
    run = [r for r in store.linked_runs(experiment_id) if r["role"] == "arm" and r["arm"] == arm][-1]
    return {r["example_id"]: float(r["correct"] or 0) for r in store.predictions(run["run_id"])}


def test_diff_shows_the_changed_setting_and_the_flipped_items(two_runs, tmp_path):
    tmp, db = two_runs
    page = tmp_path / "diff.html"
    result = CliRunner().invoke(build_app(), ["diff", "1", "2", "--store", str(db), "--html", str(page)],
                                terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "same test set: 15 items" in result.output
    assert re.search(r"arms\.few-shot\.prompt\.calibration\s+\(not set\)\s+\"contextual\"", result.output)
    d = diff_experiments(load_side("1", Store(db)), load_side("2", Store(db)))
    keys = {s.key: (s.a, s.b) for s in d.settings}
    assert keys["arms.few-shot.prompt.calibration"] == (None, '"contextual"')  # the file had the default
    assert keys["few-shot: as evaluated.calibration"] == ('"none"', '"contextual"')  # the arm as evaluated too
    assert not any(k.startswith(("zero-shot", "arms.zero-shot")) for k in keys)  # untouched arm: no change
    store = Store(db)
    before, after = stored_scores(store, 1, "few-shot"), stored_scores(store, 2, "few-shot")
    flipped = [i for i in before if before[i] != after[i]]
    few = next(a for a in d.arms if a.name == "few-shot")
    assert sorted(f.item for f in few.flips) == sorted(flipped) and flipped  # the change moved some items
    assert next(a for a in d.arms if a.name == "zero-shot").flips == []  # same prompt, same answers
    assert f"{len(flipped)} ({few.better}/{few.worse})" in result.output
    html = page.read_text()
    data = json.loads(re.search(r'id="explorer-data">([^<]*)</script>', html).group(1))
    assert sorted(data["ids"]) == sorted(flipped)
    assert [a["name"] for a in data["arms"]] == ["zero-shot (A)", "zero-shot (B)", "few-shot (A)", "few-shot (B)"]
    assert "arms.few-shot.prompt.calibration" in html


def test_a_changed_test_set_is_said_and_not_compared(two_runs, tmp_path):
    tmp, db = two_runs
    result = CliRunner().invoke(build_app(), ["diff", str(tmp / "report-1.json"), str(tmp / "report-3.json"),
                                              "--html", str(tmp_path / "d.html")], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "test set changed: A has 15 items" in result.output and "B 8" in result.output
    assert "Metrics are not compared" in result.output and "flipped" not in result.output
    assert re.search(r"task\.n_test\s+null\s+8", result.output)


def test_diff_of_a_missing_file_is_one_clear_error(tmp_path):
    result = CliRunner().invoke(build_app(), ["diff", str(tmp_path / "nope.json"), "1", "--store",
                                              str(tmp_path / "s.db")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "neither an experiment id nor a report.json" in result.output


def test_a_report_without_settings_says_so_instead_of_none_changed(two_runs, tmp_path):
    tmp, _ = two_runs
    old = json.loads((tmp / "report-1.json").read_text())
    del old["settings"]  # as an older tuneoff wrote it
    (tmp_path / "old.json").write_text(json.dumps(old))
    result = CliRunner().invoke(build_app(), ["diff", str(tmp_path / "old.json"), str(tmp / "report-2.json"),
                                              "--html", str(tmp_path / "d.html")], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "settings not recorded in" in result.output and "none changed" not in result.output
    assert "few-shot" in result.output  # the metrics are still compared: same test set
