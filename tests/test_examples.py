"""Every YAML file we ship is loaded and validated, its data files included (walks subfolders)."""

from pathlib import Path

import pytest
import yaml

from tuneoff.config.experiment import load_experiment
from tuneoff.prompting import PromptArm
from tuneoff.config.specs import load_spec
from tuneoff.config.task import TaskSpec, load_task

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SHIPPED = sorted(EXAMPLES.rglob("*.yaml"))


def test_there_are_examples_for_each_shipped_task():
    names = {p.name for p in SHIPPED}
    assert {"sst2.yaml", "banking77.yaml", "gsm8k.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_shipped_yaml_loads_and_its_data_validates(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# "), "every config opens with the command that runs it"
    data = yaml.safe_load(path.read_text())
    if "arms" in data:
        exp = load_experiment(path)
        task = load_task(exp.task)
        assert task.test, "an experiment needs test items"
        if exp.flexibility:
            assert load_task(exp.flexibility.task).test
        if exp.ood:  # another domain, the same labels
            assert {e.target for e in load_task(exp.ood.task_spec(exp.task)).test} == set(task.labels)
    elif path.parent.name == "arms":
        load_spec(PromptArm, path)
    elif path.parent.name == "accelerate":  # accelerate's own config files, read by accelerate's reader
        from accelerate.commands.config.config_args import load_config_from_file

        from tuneoff.finetune.parallel import DATA_PARALLEL

        assert load_config_from_file(str(path)).distributed_type.name in DATA_PARALLEL
    else:
        assert load_task(load_spec(TaskSpec, path, base_dir=str(path.parent))).test


def test_the_readme_experiment_is_valid_and_agrees_with_the_demo_file():
    """The README's experiment snippet is a real experiment, and where it shows the demo's settings
    (name, task instruction, constraints, tuning budgets) it says what examples/sst2.yaml says."""
    import re

    from tuneoff.config.experiment import Experiment
    from tuneoff.config.specs import from_dict

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    snippet = re.search(r"```yaml\n(# tuneoff run examples/sst2.yaml\n.*?)```", readme, re.S).group(1)
    shown = from_dict(Experiment, {**yaml.safe_load(snippet), "base_dir": str(root / "examples")}, "", "README.md")
    demo = load_experiment(root / "examples" / "sst2.yaml")
    assert (shown.name, shown.task.instruction) == (demo.name, demo.task.instruction)
    assert shown.constraints == demo.constraints
    assert shown.repeats == demo.repeats and shown.tuning.prompt == demo.tuning.prompt
