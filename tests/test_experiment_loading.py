"""Loading an experiment file: `--set KEY=VALUE` overrides (`tuneoff run` / `tuneoff demo`: dotted keys
through mappings and named list elements, YAML values, errors that name the override, sweeps whose jobs
carry them) and model paths relative to the file."""

import shlex
from pathlib import Path

import pytest
import yaml

from tuneoff.config.experiment import load_experiment
from tuneoff.config.overrides import apply_overrides
from tuneoff.errors import TuneoffError
from tuneoff.store import Store
from tuneoff.sweep.job import stored_experiment
from tuneoff.sweep.slurm import emit_slurm

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "sst2.yaml"


def test_overrides_walk_mappings_and_named_list_elements_and_leave_the_input_alone():
    data = {"dtype": "auto", "task": {"n_test": 200}, "arms": [{"name": "a", "prompt": {"shots": 2}}, {"name": "b"}]}
    out, applied = apply_overrides(data, ["dtype=fp32", "task.n_test=50", "arms.a.prompt.shots=8",
                                          "arms.1.finetune.method=lora", "adaptive={chunk: 16, alpha: 0.1}",
                                          "probe=null"])
    assert out == {"dtype": "fp32", "task": {"n_test": 50}, "probe": None, "adaptive": {"chunk": 16, "alpha": 0.1},
                   "arms": [{"name": "a", "prompt": {"shots": 8}}, {"name": "b", "finetune": {"method": "lora"}}]}
    assert data["dtype"] == "auto" and data["arms"][0]["prompt"]["shots"] == 2  # a copy was changed
    assert applied["arms[0].prompt.shots"] == "arms.a.prompt.shots=8" and "arms[1].finetune.method" in applied


@pytest.mark.parametrize("override, message", [
    ("dtype", "expected KEY=VALUE"),
    ("arms.nope.dtype=fp32", "no element named 'nope'"),
    ("arms.9.dtype=fp32", "index 9 is past the end of a list of 2"),
    ("dtype.x=1", "dtype is not a mapping"),
    ("task.n_test=[1", "not valid YAML"),
])
def test_a_bad_override_is_one_line_naming_it(override, message):
    with pytest.raises(TuneoffError, match=message) as caught:
        apply_overrides({"dtype": "auto", "task": {}, "arms": [{"name": "a"}, {"name": "b"}]}, [override])
    assert caught.value.field.startswith("--set")


def test_the_demo_loads_with_overrides_and_a_bad_value_names_the_override_not_a_line():
    exp = load_experiment(DEMO, ["dtype=fp32", "arms.lora.finetune.dtype=fp32", "adaptive={chunk: 32}",
                                 "task.n_test=100"])
    lora = next(a for a in exp.arms if a.name == "lora")
    assert exp.dtype == "fp32" and lora.finetune["dtype"] == "fp32" and exp.task.n_test == 100
    assert exp.adaptive is not None and exp.adaptive.chunk == 32
    with pytest.raises(TuneoffError) as caught:
        load_experiment(DEMO, ["arms.lora.finetune.n_train=many"])
    assert caught.value.line is None and "(set by --set arms.lora.finetune.n_train=many)" in str(caught.value)
    assert caught.value.field == "arms[4].finetune.n_train"


def test_a_mistake_in_the_file_keeps_its_line_under_overrides(tmp_path):
    data = yaml.safe_load(DEMO.read_text())
    data["task"]["n_test"] = "many"
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False).replace("data/sst2", str(ROOT / "examples/data/sst2")))
    with pytest.raises(TuneoffError) as caught:
        load_experiment(path, ["dtype=fp32"])
    assert caught.value.line is not None and "set by" not in str(caught.value)


def test_emitted_slurm_jobs_carry_the_overrides_and_the_stored_experiment_is_the_overridden_one(tmp_path):
    overrides = ["task.n_test=40", "adaptive={chunk: 8}"]
    exp, store = load_experiment(DEMO, overrides), Store(tmp_path / "store.sqlite")
    files = emit_slurm(exp, DEMO, store, tmp_path / "slurm", overrides=overrides)
    line = (tmp_path / "slurm" / "jobs.txt").read_text().splitlines()[0]
    args = shlex.split(line.split(" -m tuneoff run ", 1)[1])
    assert args[args.index("--set") + 1] == "task.n_test=40" and "adaptive={chunk: 8}" in args
    assert stored_experiment(store, files.experiment_id, load_experiment(DEMO, overrides)).task.n_test == 40
    with pytest.raises(TuneoffError, match="as its sweep stored it"):  # a job line without them is refused
        stored_experiment(store, files.experiment_id, load_experiment(DEMO))


def test_a_relative_model_path_resolves_beside_the_experiment_file_from_any_folder(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    (folder / "models" / "mine").mkdir(parents=True)
    data = yaml.safe_load(DEMO.read_text())
    data.update(model="models/mine", output="out")
    data["arms"] = [{"name": "zero-shot", "prompt": {"mode": "score"}},
                    {"name": "other", "model": "models/mine", "prompt": {"mode": "score"}},
                    {"name": "hosted", "model": "openai:gpt-4o-mini", "prompt": {"mode": "score"}}]
    for key in ("curves", "consistency", "tuning", "flexibility", "ood"):
        data.pop(key, None)
    data["task"].update(train=str(ROOT / "examples/data/sst2/train.tsv"), test=str(ROOT / "examples/data/sst2/dev.tsv"))
    (folder / "exp.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.chdir(tmp_path)  # not the experiment's folder
    exp = load_experiment("project/exp.yaml")
    assert Path(exp.model) == Path("project/models/mine") and Path(exp.arms[1].model) == Path("project/models/mine")
    assert exp.arms[2].model == "openai:gpt-4o-mini"
    (tmp_path / "elsewhere").mkdir()  # nothing beside the file: the path as given, from the current folder
    with pytest.raises(TuneoffError, match="no model at 'elsewhere/none'"):
        load_experiment("project/exp.yaml", ["model=elsewhere/none"])
    assert load_experiment("project/exp.yaml", ["model=elsewhere"]).model == "elsewhere"


def test_arm_options_are_parsed_once_into_dataclasses_and_a_bad_one_names_its_line(tmp_path):
    from tuneoff.config.specs import to_dict
    from tuneoff.finetune.spec import FinetuneArm
    from tuneoff.prompting.arm import PromptArm

    exp = load_experiment(DEMO, ["arms.lora.finetune.learning_rate=[2.0e-4, 6.0e-4]"])
    few, lora = exp.arm("few-shot").options, exp.arm("lora").options
    assert isinstance(few.prompt, PromptArm) and few.prompt.shots == 8 and few.prompt.optimise is not None
    assert few.finetune == () and few.seed == 0
    # a listed learning rate: two candidate configurations for tuning
    assert [type(c) for c in lora.finetune] == [FinetuneArm, FinetuneArm]
    assert sorted(c.learning_rate for c in lora.finetune) == [2.0e-4, 6.0e-4] and lora.teacher is None
    assert set(to_dict(exp)["arms"][0]) == {"name", "prompt", "finetune", "finetuned", "model", "prices", "repeats",
                                            "tune"}  # stored as written
    text = DEMO.read_text()
    bad = text.replace("prompt: {shots: 8, demo_selection: similar, mode: score}\n  - name: chain",
                       "prompt: {shots: many, demo_selection: similar, mode: score}\n  - name: chain")
    assert bad != text
    path = tmp_path / "exp.yaml"
    path.write_text(bad.replace("data/", str(DEMO.parent / "data") + "/"))
    with pytest.raises(TuneoffError) as err:
        load_experiment(path)
    line = next(i for i, row in enumerate(bad.splitlines(), 1) if "shots: many" in row)
    assert err.value.field == "arms[1].prompt.shots" and err.value.line == line
