"""The command table, --help, and user errors as one or two lines (no traceback)."""

import io
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


# -- the end of `run` / `demo`: a summary for an 80-column terminal ----------------------------

LONG_ARMS = [("zero-shot-with-a-very-long-descriptive-name", "prompt", 0.0),
             ("few-shot-k8-similarity-selected-demos", "prompt", 0.0),
             ("chain-of-thought-self-consistency", "prompt", 0.0),
             ("role-prompt-optimised-on-dev-split", "prompt", 312.0),
             ("lora-r16-all-linear-three-epochs", "finetune", 506.4),
             ("layer-freeze-last-two-blocks-and-head", "finetune", 1250.0),
             ("lora-r16-plus-few-shot-k8-demos", "combined", 506.4)]


def _seven_arm_comparison():
    from test_compare import arm

    from tuneoff.compare import build_comparison
    from tuneoff.config.prices import Constraints, PriceTable

    arms = [arm(name, kind, [1] * (60 + 5 * i) + [0] * (40 - 5 * i), setup=setup, p95=0.1 * (i + 1))
            for i, (name, kind, setup) in enumerate(LONG_ARMS)]
    return build_comparison("sst2-demo-with-a-long-experiment-name", "sst2", "embedded:smollm2-135m-instruct",
                            arms, PriceTable(), Constraints()), PriceTable()


def test_the_compact_summary_fits_80_columns_and_cuts_no_cell():
    from rich.console import Console

    from tuneoff.terminal import print_comparison

    comparison, prices = _seven_arm_comparison()
    out = Console(width=80, record=True, file=io.StringIO())
    print_comparison(comparison, prices, out)
    text = out.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert "…" not in text, text
    for name, kind, _ in LONG_ARMS:  # a long arm name folds onto more lines of its row
        assert re.search(rf"^ ?{re.escape(name[:12])}.*\b{kind}\b", text, re.M), name
    assert "0.900 [0.850, 0.950]" in text and "$0.0028" in text and "506 s" in text
    assert f"Recommendation: {comparison.verdict.choice} ({comparison.verdict.arm})" in text
    assert "Knowledge source" not in text  # the twelve dimensions are the report's (and --full's)


def test_full_prints_every_dimension():
    from rich.console import Console

    from tuneoff.terminal import print_comparison

    comparison, prices = _seven_arm_comparison()
    out = Console(width=400, record=True, file=io.StringIO())
    print_comparison(comparison, prices, out, full=True)
    text = out.export_text()
    assert all(dimension in text for dimension, _ in comparison.rows)
    assert "Learning curves" in text and all(f"  - {reason}" in text for reason in comparison.verdict.reasons)


def test_full_is_in_the_help_of_run_demo_and_report():
    for command in ("run", "demo", "report"):
        result = runner.invoke(build_app(), [command, "--help"], terminal_width=200)
        assert result.exit_code == 0 and "--full" in result.output, command


def test_commands_other_than_finetune_refuse_to_run_once_per_launched_process(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = CliRunner().invoke(build_app(), ["runs", "--store", str(tmp_path / "s.sqlite")])
    assert result.exit_code == 1 and "one of 2 that accelerate launch / torchrun started" in result.output
    assert not (tmp_path / "s.sqlite").exists()  # refused before it touched anything
    result = CliRunner().invoke(build_app(), ["finetune", "--help"])
    assert result.exit_code == 0
    monkeypatch.setenv("WORLD_SIZE", "1")  # a launcher with one process is one process
    assert CliRunner().invoke(build_app(), ["runs", "--store", str(tmp_path / "s.sqlite")]).exit_code == 0
