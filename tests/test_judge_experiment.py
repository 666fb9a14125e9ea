"""A judge pass inside `tuneoff run` on a tiny random Llama: the judge unit runs after the arms, its
rows (scores, reliability, cost apart) are in the report, a rerun costs no judge calls, and a random
judge does not look trustworthy.

    OMP_NUM_THREADS=1 python -m pytest -q tests/test_judge_experiment.py
"""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from tuneoff.cli import build_app
from tuneoff.compare.rebuild import comparison_from_store
from tuneoff.config.experiment import load_experiment
from tuneoff.errors import TuneoffError
from tuneoff.experiment import UnitKind, plan
from tuneoff.store import Store

ROWS = [("#Person1#: the movie was great. #Person2#: the acting was wonderful.", "#Person1# liked the movie."),
        ("#Person1#: what a waste of time. #Person2#: a dull boring film.", "#Person2# found the film dull."),
        ("#Person1#: card payment refund? #Person2#: transfer the balance.", "#Person1# asks about a refund."),
        ("#Person1#: what is the capital of france? #Person2#: paris.", "#Person2# says paris.")] * 4


def write_experiment(tmp_path, tiny_dir, judge: dict) -> tuple:
    data = tmp_path / "dialogues.jsonl"
    data.write_text("\n".join(json.dumps({"id": f"d{i}", "dialogue": d, "summary": s})
                              for i, (d, s) in enumerate(ROWS)))
    spec = {"version": 1, "name": "judged", "model": str(tiny_dir), "batch_size": 8,
            "task": {"name": "dialogues", "train": str(data), "input": "dialogue", "target": "summary",
                     "metric": "chrf", "instruction": "Summarise the dialogue.", "split_fraction": 0.25, "seed": 1},
            "arms": [{"name": "zero-shot", "prompt": {"max_new_tokens": 8}},
                     {"name": "few-shot", "prompt": {"shots": 1, "max_new_tokens": 8}}],
            "probe": {"items": 0}, "judge": {"model": str(tiny_dir), **judge},
            "output": str(tmp_path / "out")}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path, tmp_path / "store.sqlite"


def run(path, db):
    result = CliRunner().invoke(build_app(), ["run", str(path), "--store", str(db)], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_judge_unit_comes_after_every_arm_and_its_rows_reach_the_report(tmp_path, tiny_dir):
    path, db = write_experiment(tmp_path, tiny_dir, {"mode": "pairwise", "items": 4, "repeat_items": 2})
    units = plan(load_experiment(path))
    assert units[-1].kind is UnitKind.JUDGE and set(units[-1].needs) == {"arm:zero-shot", "arm:few-shot"}
    output = run(path, db)
    assert "judge " in output and "flips" in output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    judge = report["judge"]
    assert judge["mode"] == "pairwise" and set(judge["scores"]) == {"zero-shot", "few-shot"}
    # 4 items x 2 orders + 2 repeats, and retries of off-format verdicts (the same retry of the same prompt
    # is one stored call)
    assert judge["cost"]["calls"] >= 4 * 2 + 2 and 0 < judge["cost"]["new_calls"] <= judge["cost"]["calls"]
    rows = {r[0].split(":")[0].split(" (")[0]: r[1] for r in report["rows"]}
    assert "Judge" in rows and "Judge reliability" in rows and "Judge cost" in " ".join(r[0] for r in report["rows"])
    assert "position flips" in rows["Judge reliability"]["zero-shot"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Judge reliability" in md
    # the rerun: the arms and the judge come from the store's calls
    run(path, db)
    store = Store(db)
    comparison = comparison_from_store(store, 2)
    assert comparison.judge["cost"]["new_calls"] == 0
    assert comparison.judge["scores"] == judge["scores"]


def test_a_random_pointwise_judge_shows_its_weakness(tmp_path, tiny_dir):
    path, db = write_experiment(tmp_path, tiny_dir, {"items": 4, "repeat_items": 4, "retries": 1})
    run(path, db)
    judge = json.loads((tmp_path / "out" / "report.json").read_text())["judge"]
    rel = judge["reliability"]
    # a random 2-layer model almost never writes a grade: off-format, and no score is invented for it
    assert rel["off_format_rate"]["value"] > 0.5
    scored = [s for s in judge["scores"].values() if s["value"] is not None]
    assert all(s["n"] < 4 for s in scored)


def test_judge_config_errors_name_the_field(tmp_path, tiny_dir):
    path, _ = write_experiment(tmp_path, tiny_dir, {"pairs": [["zero-shot", "few-shoot"]], "mode": "pairwise"})
    with pytest.raises(TuneoffError, match="few-shoot") as err:
        load_experiment(path)
    assert err.value.field == "judge.pairs"
    path, _ = write_experiment(tmp_path, tiny_dir, {"scale": "1-10"})
    with pytest.raises(TuneoffError) as err:
        load_experiment(path)
    assert "judge.scale" in str(err.value)
    path, _ = write_experiment(tmp_path, tiny_dir, {})
    spec = yaml.safe_load(path.read_text())
    spec["judge"]["model"] = str(tmp_path / "no-such-model")
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(TuneoffError, match="no model at") as err:
        load_experiment(path)
    assert err.value.field == "judge.model"


def test_an_unreachable_judge_keeps_the_arms_and_the_report(tmp_path, tiny_dir):
    path, db = write_experiment(tmp_path, tiny_dir, {"items": 2, "repeat_items": 0})
    spec = yaml.safe_load(path.read_text())
    spec["judge"]["model"] = "http://127.0.0.1:9/v1?model=m&retries=0&timeout=2"  # the discard port: nobody
    path.write_text(yaml.safe_dump(spec))
    output = run(path, db)
    assert "judge pass stopped" in output and "rerun to resume" in output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["judge"] is None and not any(r[0].startswith("Judge") for r in report["rows"])
    assert {a["name"] for a in report["arms"]} == {"zero-shot", "few-shot"}


def test_ratings_that_name_no_test_item_fail_before_the_arms_run(tmp_path, tiny_dir):
    ratings = tmp_path / "ratings.jsonl"
    ratings.write_text(json.dumps({"id": "nope", "arm": "zero-shot", "rating": 3}) + "\n")
    path, db = write_experiment(tmp_path, tiny_dir, {"ratings": str(ratings)})
    result = CliRunner().invoke(build_app(), ["run", str(path), "--store", str(db)], terminal_width=200)
    assert result.exit_code == 1
    assert f"{ratings}:1: field 'id'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out" / "report.json").exists()
