"""The house's shape, checked: rooms are layered (import-linter), a reintroduced cycle breaks the
contract, reading configs stays light, and each list the user extends has one source of truth."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports())"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(pythonpath), "PATH": "/usr/bin:/bin"})


def test_layers_contract_is_kept():
    result = lint_imports(ROOT, ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The guard is real: a copy of the package where the data room imports the pipeline fails."""
    shutil.copytree(ROOT / "tuneoff", tmp_path / "tuneoff", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    errors = tmp_path / "tuneoff" / "errors.py"
    errors.write_text(errors.read_text() + "\n\ndef _cycle():\n    from . import experiment  # noqa\n")
    result = lint_imports(tmp_path, tmp_path)
    assert result.returncode != 0
    assert "tuneoff.errors is not allowed to import tuneoff.experiment" in result.stdout


@pytest.mark.parametrize("what", ["examples/sst2.yaml", "examples/banking77.yaml", "examples/translation-task.yaml"])
def test_reading_a_config_imports_neither_torch_nor_scipy(what):
    code = (f"import sys\nfrom tuneoff.config.experiment import load_experiment\n"
            f"from tuneoff.config.specs import load_spec\nfrom tuneoff.config.task import TaskSpec\n"
            f"p = {str(ROOT / what)!r}\n"
            f"import yaml\nd = yaml.safe_load(open(p))\n"
            f"load_experiment(p) if 'arms' in d else load_spec(TaskSpec, p)\n"
            f"print(sorted(m for m in ('torch', 'scipy', 'transformers', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_registered_metric_is_a_valid_task_metric(monkeypatch):
    """Task validation asks the metric registry: a metric added there is accepted, an unknown one
    gets did-you-mean from the same list."""
    import numpy as np

    from tuneoff import metrics
    from tuneoff.config.specs import from_dict
    from tuneoff.config.task import TaskSpec
    from tuneoff.errors import TuneoffError

    new = metrics.Metric("length_match", "same length", lambda p, t: np.array([float(len(p or "") == len(t))]),
                         lambda s, n: s / max(n, 1))
    monkeypatch.setitem(metrics.METRICS, new.name, new)
    assert from_dict(TaskSpec, {"name": "t", "train": "x.jsonl", "metric": "length_match"}).metric == "length_match"
    with pytest.raises(TuneoffError, match="did you mean 'length_match'"):
        from_dict(TaskSpec, {"name": "t", "train": "x.jsonl", "metric": "length_matc"})
