"""One experiment mixing a served model's prompt arm (the OpenAI-compatible backend against a real
`tuneoff serve` on loopback) with local fine-tuning and a distilled arm: per-arm models and prices,
the teacher's answers as the student's targets, and the report's distillation figures.

    OMP_NUM_THREADS=1 python -m pytest -q tests/test_served_experiment.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tuneoff.compare.rebuild import comparison_from_store
from tuneoff.compare.costs import money
from tuneoff.config.experiment import load_experiment
from tuneoff.errors import TuneoffError
from tuneoff.prompting import TaskContext, prepare
from tuneoff.prompting.arm import PromptArm
from tuneoff.records import Role
from tuneoff.experiment import run_experiment
from tuneoff.serve import ServedArm, ServeOptions, ServerThread, arm_from_store, build
from tuneoff.store import Store

GOOD = Path(__file__).parent / "fixtures" / "good"


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def spec(model: str, served: str, out: Path) -> dict:
    return {
        "version": 1, "name": "served", "model": model, "batch_size": 8,
        "task": {"name": "sst2", "train": str(GOOD / "sst2_dev_60.tsv"), "input": "sentence|content",
                 "target": "label", "label_map": {"0": "negative", "1": "positive"},
                 "labels": ["negative", "positive"], "instruction": "positive or negative?",
                 "split_fraction": 0.25, "seed": 1, "n_test": 8},
        "prices": {"mode": "hardware", "hardware_per_hour": 0.5},
        "arms": [
            {"name": "big-few-shot", "model": served, "prompt": {"mode": "generate", "max_new_tokens": 3},
             "prices": {"mode": "api", "input_per_1k_tokens": 1.0, "output_per_1k_tokens": 2.0}},
            {"name": "lora", "finetune": {"method": "lora", "n_train": 8, "epochs": 1, "batch_size": 4}},
            {"name": "student", "finetune": {"method": "lora", "epochs": 1, "batch_size": 4,
                                             "teacher": "big-few-shot", "n_unlabelled": 10}},
        ],
        "constraints": {"monthly_requests": 1000},
        "output": str(out),
    }


def test_served_prompt_arm_local_finetune_and_distilled_student(tiny_model_dir, tmp_path):
    # the served model: a score-mode arm behind `tuneoff serve` always answers a label, so the random
    # tiny model still makes a teacher whose answers are usable targets
    scored = prepare(PromptArm(name="big", mode="score"), TaskContext(labels=("negative", "positive")))
    app, _ = build(ServedArm("big", str(tiny_model_dir), scored), ServeOptions())
    path = tmp_path / "exp.yaml"
    store = Store(tmp_path / "runs.sqlite")
    with ServerThread(app) as server:
        path.write_text(yaml.safe_dump(spec(str(tiny_model_dir), f"{server.url}?model=big", tmp_path / "out")))
        exp_id = run_experiment(load_experiment(path), store)
    comparison = comparison_from_store(store, exp_id)
    arms = {a.name: a for a in comparison.arms}
    assert arms["big-few-shot"].model.startswith("http://127.0.0.1:") and arms["lora"].model != arms["big-few-shot"].model

    # the teacher answered 10 training inputs over HTTP; the student trained on exactly those answers
    [distill] = store.linked_runs(exp_id, Role.DISTILL.value)
    teacher_rows = store.predictions(distill["run_id"])
    assert len(teacher_rows) == 10 and distill["arm"] == "student"
    answered = [r for r in teacher_rows if r["prediction"]]
    [train] = [r for r in store.linked_runs(exp_id, Role.FINETUNE.value) if r["arm"] == "student"]
    assert json.loads(store.run(train["run_id"])["summary_json"])["examples"] == len(answered)

    student = arms["student"]
    assert student.distillation["teacher"] == "big-few-shot" and student.distillation["n_unlabelled"] == 10
    expected = sum(a["p"] == b for a, b in [({"p": p}, q) for p, q in zip(
        student.predictions, arms["big-few-shot"].predictions)]) / len(student.predictions)
    assert student.distillation["agreement"] == pytest.approx(expected)
    # the teacher's calls are one-off cost at the teacher's api prices: tokens x $/1k, per answer
    teacher_calls = store.calls(distill["run_id"])
    dollars = sum(c["tokens_in"] * 1.0 / 1000 + c["tokens_out"] * 2.0 / 1000 for c in teacher_calls)
    assert student.distillation["teacher_calls_dollars"] == pytest.approx(dollars, rel=1e-6)
    assert student.one_off_dollars == pytest.approx(dollars, rel=1e-6)

    _serve_stored_arm(store, exp_id, arms["student"])

    rows = dict(comparison.rows)
    assert "(api prices)" in rows["Model"]["big-few-shot"] and "student of big-few-shot" in rows["Distillation"]["student"]
    served_cost = arms["big-few-shot"].tokens_in / 1000 * 1.0 + arms["big-few-shot"].tokens_out / 1000 * 2.0
    assert rows["Cost per 1k requests"]["big-few-shot"].startswith(money(1000 * served_cost))
    local = arms["lora"]
    assert rows["Cost per 1k requests"]["lora"].startswith(money(1000 * 0.5 / 3600 * local.seconds_per_request))


def _serve_stored_arm(store: Store, exp_id: int, student) -> None:
    """`tuneoff serve --experiment ID --arm student`: the stored arm on its adapter answers as evaluated."""
    import openai

    served = arm_from_store(store, exp_id, "student")
    assert (Path(served.model) / "adapter_config.json").exists() and served.mode == "score"
    app, _ = build(served, ServeOptions())
    with ServerThread(app) as server:
        client = openai.OpenAI(base_url=server.url, api_key="unused")
        replies = [client.chat.completions.create(model="student", messages=[{"role": "user", "content": text}])
                   .choices[0].message.content for text in student.inputs[:4]]
    assert replies == student.predictions[:4]


def test_distillation_and_served_models_are_checked_with_file_line_and_field(tmp_path):
    base = spec("embedded:smollm2-135m-instruct", "http://127.0.0.1:9/v1?model=x", tmp_path / "out")
    bad_teacher = json.loads(json.dumps(base))
    bad_teacher["arms"][2]["finetune"]["teacher"] = "big-few-shoot"
    served_finetune = json.loads(json.dumps(base))
    served_finetune["arms"][1]["model"] = "http://127.0.0.1:9/v1?model=x"
    no_teacher = json.loads(json.dumps(base))
    del no_teacher["arms"][2]["finetune"]["teacher"]
    for data, field, message in [(bad_teacher, "arms[2].finetune.teacher", "did you mean 'big-few-shot'"),
                                 (served_finetune, "arms[1].model", "needs local weights"),
                                 (no_teacher, "n_unlabelled", "needs a `teacher` arm")]:
        path = tmp_path / "exp.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        with pytest.raises(TuneoffError) as info:
            load_experiment(path)
        assert field in (info.value.field or "") and info.value.line and message in str(info.value), str(info.value)
