"""The command table, --help, and user errors as one or two lines (no traceback)."""

import re

from typer.testing import CliRunner

from tuneoff.cli import COMMANDS, build_app

runner = CliRunner()


def test_help_lists_exactly_the_command_table():
    result = runner.invoke(build_app(), ["--help"], terminal_width=200)
    assert result.exit_code == 0
    listed = set(re.findall(r"^│ (\w+)\s{2,}", result.output, re.M))
    assert listed == set(COMMANDS)


def test_every_command_documents_every_argument():
    for name in COMMANDS:
        result = runner.invoke(build_app(), [name, "--help"], terminal_width=200)
        assert result.exit_code == 0, name
        assert COMMANDS[name].__doc__, f"{name} needs a docstring"


def test_unknown_model_is_a_two_line_error(tmp_path):
    result = runner.invoke(build_app(), ["ask", "hi", "-m", "embedded:nope", "--store", str(tmp_path / "s.db")])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "unknown embedded model 'nope'" in result.output
    assert len(result.output.strip().splitlines()) <= 2


def test_runs_on_an_empty_store(tmp_path):
    result = runner.invoke(build_app(), ["runs", "--store", str(tmp_path / "s.db")], terminal_width=200)
    assert result.exit_code == 0 and "Runs in" in result.output


def test_ci_runs_the_readme_test_command():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    commands = re.search(r"```bash\n(.*?)```", readme, re.S).group(1).strip().splitlines()
    assert len(commands) == 2, "README opens with exactly two commands"
    assert commands[1] in (root / ".ci" / "run").read_text()
