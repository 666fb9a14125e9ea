"""Sweeps: `tuneoff run --jobs 2` and an emitted Slurm array (its lines run here with bash, in order)
give the report numbers of a single `tuneoff run`; the unit plan; the store under two writing processes.

The experiment is the tiny random Llama's: a tuned prompt arm, a tuned LoRA arm, a prompt arm on the
LoRA model, both learning curves, consistency and flexibility, so every kind of unit and every state a
unit hands to another (a trained folder, a fine-tune's chosen options, a prompt's chosen instruction)
crosses a process boundary.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tuneoff.cli import build_app
from tuneoff.config.experiment import load_experiment
from tuneoff.errors import TuneoffError
from tuneoff.records import ExperimentRuns, Role, UnitState
from tuneoff.store import Store, filesystem_type, journal_mode
from tuneoff.experiment import Unit, UnitKind, plan, waves
from tuneoff.sweep import run_stored_unit, threads_per_job

ROOT = Path(__file__).resolve().parents[1]
GOOD = Path(__file__).parent / "fixtures" / "good"
PYTHON_ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def spec(model: Path, out: Path, full: bool = True) -> dict:
    """The full experiment (10 units: every kind) or its small part (4 units: a tuned prompt arm, a tuned
    LoRA arm, a prompt arm on the LoRA model, a point of the training-size curve), for the test that
    starts a process per unit."""
    exp = {
        "version": 1, "name": "sweep", "model": str(model), "batch_size": 8, "output": str(out),
        "task": {"name": "sst2", "train": str(GOOD / "sst2_dev_60.tsv"), "input": "sentence|content",
                 "target": "label", "label_map": {"0": "negative", "1": "positive"},
                 "labels": ["negative", "positive"], "instruction": "positive or negative?",
                 "split_fraction": 0.25, "seed": 1, "n_test": 10},
        "arms": [
            {"name": "zero-shot", "prompt": {"mode": "score"}, "tune": True},
            {"name": "few-shot", "prompt": {"shots": 2, "demo_selection": "stratified", "mode": "score"}},
            {"name": "lora", "finetune": {"method": "lora", "n_train": 16, "batch_size": 8,
                                          "learning_rate": [1e-3, 1e-2]}},
            {"name": "lora+few", "finetuned": "lora", "prompt": {"shots": 2, "mode": "score"}},
        ],
        "tuning": {"finetune": {"max_epochs": 1},
                   "prompt": {"budget": 12, "dev_items": 4, "paraphrases": 0, "calibration": ["none", "contextual"]}},
        "curves": {"prompt_arm": "zero-shot", "shots": [0, 1], "n_train": [8, 16]},
        "consistency": {"arms": ["zero-shot", "lora+few"], "paraphrases": ["sentiment?"]},
        "flexibility": {"task": {"name": "banking", "test": str(GOOD / "banking77_test_60.csv"), "input": "text",
                                 "target": "category", "labels": str(GOOD / "banking77_categories.json"),
                                 "n_test": 4}},
        "probe": {"items": 2, "concurrency": 2},
        "constraints": {"monthly_requests": 1000},
    }
    if not full:
        exp["arms"] = [a for a in exp["arms"] if a["name"] != "few-shot"]
        exp["curves"] = {"n_train": [8]}
        del exp["consistency"], exp["flexibility"]
    return exp


def write(tmp: Path, model: Path, full: bool = True) -> Path:
    path = tmp / "exp.yaml"
    path.write_text(yaml.safe_dump(spec(model, tmp / "out", full)))
    return path


def numbers(report: dict) -> dict:
    """Everything in a report that is a measured quality, not a time: per arm its metric, CI, spread,
    per-item predictions, agreement, flexibility, training size and what tuning chose; the curves and
    crossover, the paired test, the confusion matrices and the verdict's choice."""
    keep = ("name", "kind", "metric", "ci_low", "ci_high", "metric_std", "runs", "correct", "predictions",
            "agreement", "metric_spread", "flexibility", "ood", "trainable_parameters", "examples_used",
            "examples_needed", "format_violation_rate", "hallucinated_label_rate", "tokens_in", "tokens_out")
    arms = [{k: a.get(k) for k in keep} for a in report["arms"]]
    curves = sorted((c["arm"], c["axis"], c["points"]) for c in report["curves"])
    return {"arms": arms, "curves": curves, "crossover": report["crossover"], "test": report["test"],
            "confusion": report["confusion"], "verdict": (report["verdict"]["choice"], report["verdict"]["arm"]),
            "tuning": [(a["name"], (a.get("tuning") or {}).get("chosen")) for a in report["arms"]]}


TIMED = ("second", "latency", "throughput", "wall", "per_s", "p50", "p95")
"""Metric names that are times: they differ between any two runs."""


def stored(store_path: Path, experiment_id: int = 1) -> dict:
    """What the store holds for an experiment, run by run: for every linked run (by role, arm and x;
    run ids differ between executors) its metrics with their CIs, times left out, and its per-item
    predictions (item, input, output, prediction, correct)."""
    store = Store(store_path)
    out = {}
    for link in store.linked_runs(experiment_id):
        if link["role"] in ("finetune", "repeat_train", "curve_train", "tuning", "probe"):
            continue  # training and timing runs: their numbers are times and losses of the same seeds
        metrics = {name: (row["value"], row["ci_low"], row["ci_high"])
                   for name, row in store.metrics(link["run_id"]).items() if not any(t in name for t in TIMED)}
        items = [(r["item"], r["example_id"], r["input"], r["output"], r["prediction"], r["correct"])
                 for r in store.predictions(link["run_id"])]
        out[(link["role"], link["arm"], link["x"])] = (metrics, items)
    store.close()
    return out


def run_cli(*args: str) -> str:
    result = CliRunner().invoke(build_app(), ["run", *args], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def reference(tmp: Path, model: Path, full: bool) -> dict:
    """The numbers of a single `tuneoff run` (the plan's units in order, in this process), and what it stored."""
    path = write(tmp, model, full)
    run_cli(str(path), "--store", str(tmp / "store.sqlite"))
    return {**json.loads((tmp / "out" / "report.json").read_text()), "stored": stored(tmp / "store.sqlite")}


@pytest.fixture(scope="module")
def single(tmp_path_factory, tiny_dir):
    return reference(tmp_path_factory.mktemp("single"), tiny_dir, full=True)


@pytest.fixture(scope="module")
def single_small(tmp_path_factory, tiny_dir):
    return reference(tmp_path_factory.mktemp("single-small"), tiny_dir, full=False)


def test_the_plan_has_a_unit_per_arm_curve_point_and_probe_each_after_what_it_needs(tiny_dir, tmp_path):
    units = plan(load_experiment(write(tmp_path, tiny_dir)))
    needs = {u.name: u.needs for u in units}
    assert list(needs) == ["arm:lora", "arm:zero-shot", "arm:few-shot", "arm:lora+few", "shots:0", "shots:1",
                           "n_train:8", "n_train:16", "consistency", "flexibility"]
    assert needs["arm:lora"] == () and needs["arm:lora+few"] == ("arm:lora",)
    assert needs["shots:0"] == ("arm:zero-shot",)  # the tuned prompt's chosen instruction
    assert needs["n_train:8"] == ("arm:lora",)  # the tuned fine-tune's chosen options
    assert needs["consistency"] == ("arm:zero-shot", "arm:lora") and needs["flexibility"] == ("arm:lora",)
    assert [[u.name for u in w] for w in waves(units)] == [
        ["arm:lora", "arm:zero-shot", "arm:few-shot"],
        ["arm:lora+few", "shots:0", "shots:1", "n_train:8", "n_train:16", "consistency", "flexibility"]]


def test_an_adaptive_experiments_arms_are_one_unit(tiny_dir, tmp_path):
    """`adaptive:` scores the arms' test items interleaved, each stopping against the others: the arms
    stay together, and what needs an arm needs that unit."""
    path = tmp_path / "adaptive.yaml"
    path.write_text(yaml.safe_dump({**spec(tiny_dir, tmp_path / "out"), "adaptive": {"chunk": 4, "min_items": 4}}))
    units = plan(load_experiment(path))
    assert [(u.name, u.needs) for u in units] == [
        ("arms", ()), ("shots:0", ("arms",)), ("shots:1", ("arms",)), ("n_train:8", ("arms",)),
        ("n_train:16", ("arms",)), ("consistency", ("arms",)), ("flexibility", ("arms",))]


def test_jobs_2_gives_the_numbers_of_jobs_1(single, tiny_dir, tmp_path):
    path = write(tmp_path, tiny_dir)
    output = run_cli(str(path), "--store", str(tmp_path / "store.sqlite"), "--jobs", "2")
    assert "10 units on 2 processes" in output and "arm:lora done" in output and "Recommendation:" in output
    parallel = json.loads((tmp_path / "out" / "report.json").read_text())
    assert numbers(parallel) == numbers(single)
    # the store itself: every evaluation's metrics, CIs and per-item predictions, run for run
    assert stored(tmp_path / "store.sqlite") == single["stored"]
    assert len(single["stored"]) >= 12  # arms, repeats, curve points, consistency, flexibility, searches
    assert [a["name"] for a in parallel["arms"]] == ["zero-shot", "few-shot", "lora", "lora+few"]
    store = Store(tmp_path / "store.sqlite")
    units = store.units(1)
    assert len(units) == 10 and {u["status"] for u in units.values()} == {"done"}
    assert json.loads(units["arm:lora"]["state_json"])["arms"]["lora"]["chosen"]["learning_rate"] in (1e-3, 1e-2)
    assert json.loads(units["arm:zero-shot"]["state_json"])["arms"]["zero-shot"]["prompt"]["calibration"]
    # each unit's record: the runs it linked (as the store's links say) and its timings
    lora = UnitState.from_json(units["arm:lora"]["state_json"])
    assert {(link.role, link.arm) for link in lora.runs} >= {(Role.ARM, "lora"), (Role.TUNING, "lora")}
    assert set(lora.runs) <= set(ExperimentRuns.read(store, 1).links) and lora.phases["lora: tune"] > 0
    # one training per model folder: the arm's own model is also the curve's n=16 point
    assert store.db.execute("SELECT COUNT(*) FROM runs WHERE kind='finetune' AND status='done'").fetchone()[0] == \
        len({json.loads(r[0])["output_dir"] for r in store.db.execute(
            "SELECT summary_json FROM runs WHERE kind='finetune' AND status='done'")})
    summary = json.loads(store.experiment(1)["summary_json"])
    assert summary["jobs"] == 2 and summary["sizes"]["test"] == 10 and summary["phases"]["total"] > 0
    assert (tmp_path / "out" / "logs" / "experiment-1" / "arm-lora.log").is_file()


def test_two_jobs_that_want_the_same_model_folder_train_it_once(tiny_dir, tmp_path):
    """The arm's own model is also the curve's n=8 point: the two units run at once, one trains, the
    other waits for the folder and reuses it (without the wait, training's own lock refuses it)."""
    exp = spec(tiny_dir, tmp_path / "out", full=False)
    exp.update(arms=[{"name": "lora", "finetune": {"method": "lora", "n_train": 8, "batch_size": 8}}],
               curves={"n_train": [8]}, probe={"items": 0})
    del exp["tuning"]
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    run_cli(str(path), "--store", str(tmp_path / "store.sqlite"), "--jobs", "2")
    store = Store(tmp_path / "store.sqlite")
    assert store.db.execute("SELECT COUNT(*) FROM runs WHERE kind='finetune'").fetchone()[0] == 1
    trained = {link["run_id"] for role in ("finetune", "curve_train") for link in store.linked_runs(1, role)}
    assert len(trained) == 1


def test_a_failed_unit_is_reported_and_the_units_that_need_it_are_skipped(tmp_path):
    from tuneoff.sweep.local import Job, schedule

    said = []
    units = [Unit(UnitKind.ARM, "a"), Unit(UnitKind.ARM, "b", needs=("arm:a",)), Unit(UnitKind.ARM, "c")]
    # the store path is a folder: every job fails to start, with the store's one-line error
    failed = schedule(units, 2, 1, lambda u: Job(str(tmp_path), 1, u.name, str(tmp_path / f"{u.name}.log")), said.append)
    assert failed["arm:b"] == "skipped, it needs arm:a"
    assert "cannot open run store" in failed["arm:a"] and f"log: {tmp_path}" in failed["arm:c"]
    assert any("arm:a failed" in line for line in said) and not any("started arm:b" in line for line in said)


def test_an_emitted_slurm_array_run_line_by_line_gives_the_numbers_of_jobs_1(single_small, tiny_dir, tmp_path,
                                                                           monkeypatch):
    path, db, slurm = tmp_path / "exp.yaml", tmp_path / "store.sqlite", tmp_path / "slurm"
    path.write_text(yaml.safe_dump({**spec(tiny_dir, tmp_path, full=False), "output": "out"}))
    monkeypatch.chdir(tmp_path)  # emitted with relative paths; the jobs run from another folder
    output = run_cli("exp.yaml", "--store", "store.sqlite", "--emit-slurm", "slurm")
    monkeypatch.chdir(ROOT)
    assert "4 units in 2 dependency wave(s)" in output and "submit.sh" in output
    lines = (slurm / "jobs.txt").read_text().splitlines()
    # the second wave after the arms it needs: the LoRA model, and the options its search chose
    assert [line.rsplit(" ", 1)[1] for line in lines] == ["arm:lora", "arm:zero-shot", "arm:lora+few", "n_train:8"]
    assert lines[0] == (f'cd {tmp_path} && "${{TUNEOFF_PYTHON:-{sys.executable}}}" -m tuneoff run {path} '
                        f"--store {db} --experiment-id 1 --unit arm:lora")
    array = (slurm / "array.sbatch").read_text()
    for directive in ("#SBATCH --array=0-3", "#SBATCH --cpus-per-task=4", "#SBATCH --mem=16G",
                      "#SBATCH --time=04:00:00", f"#SBATCH --output={slurm}/logs/%A_%a.out",
                      'export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"', "SLURM_ARRAY_TASK_ID + 1"):
        assert directive in array
    finish = (slurm / "finish.sbatch").read_text()
    assert finish.rstrip().endswith(f"--experiment-id 1 --finish")
    submit = (slurm / "submit.sh").read_text()
    assert "--array=0-1$throttle ${after:+--dependency=afterok$after} array.sbatch" in submit
    assert "--array=2-3$throttle ${after:+--dependency=afterok$after} array.sbatch" in submit
    assert "--dependency=afterok$after finish.sbatch" in submit
    assert Store(db).experiment(1)["name"] == "sweep"  # emitting made the experiment row the jobs link to

    # submit.sh against a fake sbatch: the waves chain their dependencies, finish waits for all of them
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text('#!/bin/bash\necho "$@" >> "$SBATCH_LOG"\necho $((RANDOM % 900 + 100))\n')
    (fake / "sbatch").chmod(0o755)
    env = {**PYTHON_ENV, "PATH": f"{fake}:{os.environ['PATH']}", "SBATCH_LOG": str(tmp_path / "sbatch.log"),
           "TUNEOFF_ARRAY_MAX": "2"}
    subprocess.run(["bash", str(slurm / "submit.sh"), "--partition=cpu"], env=env, check=True, capture_output=True)
    calls = (tmp_path / "sbatch.log").read_text().splitlines()
    first, second, last = (c.split() for c in calls)
    assert first[:3] == ["--parsable", "--partition=cpu", "--array=0-1%2"] and first[-1] == "array.sbatch"
    assert second[3].startswith("--dependency=afterok:") and second[3].count(":") == 1
    assert last[-1] == "finish.sbatch" and last[2].count(":") == 2

    # a unit whose needs have not run is refused, naming them
    with pytest.raises(TuneoffError, match="needs arm:lora of experiment 1, which has not finished"):
        run_stored_unit(Store(db), 1, "arm:lora+few")
    for i in range(len(lines)):  # each array task, in order, as Slurm would run it (here: with bash)
        done = subprocess.run(["bash", str(slurm / "array.sbatch")], env={**PYTHON_ENV, "SLURM_ARRAY_TASK_ID": str(i)},
                              capture_output=True, text=True, cwd=ROOT, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run(["bash", str(slurm / "finish.sbatch")], env=PYTHON_ENV, capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Recommendation:" in done.stdout
    emitted = json.loads((tmp_path / "out" / "report.json").read_text())
    assert numbers(emitted) == numbers(single_small)
    assert stored(db) == single_small["stored"]
    assert json.loads(Store(db).experiment(1)["summary_json"])["jobs"] == 4


def test_a_unit_is_refused_on_an_edited_experiment_file(tiny_dir, tmp_path):
    path, db = write(tmp_path, tiny_dir, full=False), tmp_path / "store.sqlite"
    run_cli(str(path), "--store", str(db), "--emit-slurm", str(tmp_path / "slurm"))
    edited = yaml.safe_load(path.read_text())
    edited["task"]["n_test"] = 5
    path.write_text(yaml.safe_dump(edited))
    result = CliRunner().invoke(build_app(), ["run", str(path), "--store", str(db), "--experiment-id", "1",
                                              "--unit", "arm:lora"])
    assert result.exit_code == 1 and "is not experiment 1 as its sweep stored it" in result.output
    result = CliRunner().invoke(build_app(), ["run", str(path), "--store", str(db), "--experiment-id", "1",
                                              "--unit", "arm:lorra"])
    assert result.exit_code == 1
    result = CliRunner().invoke(build_app(), ["run", str(path), "--store", str(db), "--unit", "arm:lora"])
    assert result.exit_code == 1 and "need --experiment-id" in result.output


WRITER = """
import sys
from tuneoff.store import Store
store, worker = Store(sys.argv[1]), int(sys.argv[2])
for i in range(150):
    run = store.start_run("eval", arm=f"w{worker}", fingerprint=f"{worker}-{i}")
    call = store.add_call(run_id=run, model="m", prompt=f"{worker}-{i}", params={}, output="x", tokens_in=1,
                          tokens_out=1, latency_s=0.0)
    store.add_predictions(run, [{"item": k, "example_id": str(k), "input": "i", "target": "t", "output": "o",
                                 "call_id": call} for k in range(5)])
    store.finish_run(run, "done", {"i": i})
"""


def test_two_processes_writing_one_store_lose_nothing(tmp_path):
    db = tmp_path / "store.sqlite"
    Store(db).close()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(w)], env=PYTHON_ENV,
                              stderr=subprocess.PIPE, text=True) for w in (1, 2)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    store = Store(db)
    assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for w in (1, 2):
        assert store.db.execute("SELECT COUNT(*) FROM runs WHERE arm=? AND status='done'", (f"w{w}",)).fetchone()[0] == 150
    assert store.db.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 300
    assert store.db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 1500


def test_a_store_on_a_network_filesystem_uses_the_rollback_journal(tmp_path, monkeypatch):
    mounts = "/dev/sda1 / ext4 rw 0 0\nnas:/export /shared nfs4 rw 0 0\nnas:/x /shared/my\\040dir lustre rw 0 0\n"
    assert filesystem_type(Path("/shared/exp/runs.sqlite"), mounts) == "nfs4"
    assert filesystem_type(Path("/shared/my dir/runs.sqlite"), mounts) == "lustre"
    assert filesystem_type(Path("/sharedx/runs.sqlite"), mounts) == "ext4"
    monkeypatch.setenv("TUNEOFF_STORE_JOURNAL", "delete")
    assert journal_mode(tmp_path / "a.sqlite") == "delete"
    assert Store(tmp_path / "a.sqlite").db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    monkeypatch.setenv("TUNEOFF_STORE_JOURNAL", "memory")
    with pytest.raises(TuneoffError, match="TUNEOFF_STORE_JOURNAL"):
        journal_mode(tmp_path / "b.sqlite")


def test_threads_per_job_split_the_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert [threads_per_job(n) for n in (1, 4, 16, 32)] == [16, 4, 1, 1]
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads_per_job(4) == 2


def test_the_readmes_vllm_arm_is_a_valid_arm_on_the_openai_backend():
    import re

    from tuneoff.config.experiment import ArmEntry
    from tuneoff.config.specs import from_dict
    from tuneoff.models.openai import ServerOptions

    readme = (ROOT / "README.md").read_text()
    snippet = re.search(r"```yaml\n(arms:\n  - name: qwen-few-shot\n.*?)```", readme, re.S).group(1)
    entry = from_dict(ArmEntry, yaml.safe_load(snippet)["arms"][0], "arms[0]", "README.md")
    options = ServerOptions.parse(entry.model)
    assert (options.base_url, options.model, options.concurrency) == ("http://gpu-node:8000/v1", "qwen", 32)
    assert options.template == "/models/Qwen2.5-1.5B-Instruct" and entry.prices.mode == "hardware"
    assert "--served-model-name qwen" in readme  # the server's name for the model is the spec's model=
