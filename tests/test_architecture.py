"""The house's shape, checked: rooms are layered (import-linter), a reintroduced cycle breaks the
contract, reading configs stays light, and each list the user extends has one source of truth."""

import re
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


def import_cycles(package: str = "tuneoff") -> list[list[str]]:
    """Groups of modules that import each other, directly or around a loop (Tarjan's strongly connected
    components of the import graph), counting imports inside functions and under TYPE_CHECKING too."""
    import grimp

    graph = grimp.build_graph(package, exclude_type_checking_imports=False, cache_dir=None)
    order, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(module: str) -> None:
        order[module] = low[module] = len(order)
        stack.append(module)
        on_stack.add(module)
        for other in graph.find_modules_directly_imported_by(module):
            if other not in order:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], order[other])
        if low[module] == order[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in order:
            visit(module)
    return cycles


def test_no_module_imports_itself_around_a_loop():
    """Not only rooms: no two modules of one room import each other either (a loop is a seam in the wrong place)."""
    assert import_cycles() == []


def test_the_cycle_check_sees_a_loop_inside_a_room(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "tuneoff", tmp_path / "tuneoff", ignore=shutil.ignore_patterns("__pycache__"))
    spec = tmp_path / "tuneoff" / "models" / "spec.py"
    spec.write_text(spec.read_text() + "\n\ndef _loop():\n    from . import weights  # noqa\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "tuneoff" or m.startswith("tuneoff.")]:
        monkeypatch.delitem(sys.modules, name)
    cycles = import_cycles()
    assert any("tuneoff.models.spec" in group and "tuneoff.models.weights" in group for group in cycles)


def test_kinds_are_compared_as_enums_outside_parsing_code():
    """Arm, unit, run, job and training-step kinds are enums compared by identity (`kind is ArmKind.FINETUNE`);
    a string comparison is left only where text is parsed: a data file's format, a request's field name,
    the units grounding finds in an output."""
    pattern = re.compile(r'kind ==|kind in \(|== "finetune"|== "prompt"')
    found = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "tuneoff").rglob("*")
                   if path.suffix in (".py", ".j2") and pattern.search(path.read_text(encoding="utf-8")))
    parsing = {"tuneoff/data/readers.py", "tuneoff/serve/app.py",
               "tuneoff/grounding.py"}  # the kinds of content units parsed out of a text
    assert set(found) <= parsing, f"compare an enum member (`kind is Kind.X`), not a string: {set(found) - parsing}"


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
