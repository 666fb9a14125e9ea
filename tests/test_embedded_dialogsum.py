"""examples/dialogsum.yaml on a handful of items with the embedded SmolLM2-135M (real weights): the report
has the reference-metric rows with CIs, the length and truncation rows, and no label figure."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.embedded

EXAMPLE = Path(__file__).parents[1] / "examples" / "dialogsum.yaml"
SMALL = ["task.n_test=2", "task.n_train=12", "arms.lora.finetune.n_train=8", "arms.lora.finetune.epochs=1",
         "curves.shots=[0, 2]", "curves.n_train=[8]", "probe.items=0",  # curve points the arms' own runs answer
         *[f"arms.{arm}.prompt.max_new_tokens=16" for arm in ("zero-shot", "few-shot", "role", "lora", "lora+few-shot")]]
"""A handful of items: 2 test dialogues, a pool of 12, 8 training pairs, 16-token replies (minutes on 2 cores)."""


def test_dialogsum_example_runs_on_the_embedded_model(tmp_path, monkeypatch):
    from conftest import REAL_HOME
    from tuneoff.cli import build_app

    monkeypatch.setenv("TUNEOFF_HOME", REAL_HOME)  # the embedded model's dequantised cache
    args = ["run", str(EXAMPLE), "--store", str(tmp_path / "s.sqlite"), "--set", f"output={tmp_path / 'out'}"]
    for override in SMALL:
        args += ["--set", override]
    result = CliRunner().invoke(build_app(), args, terminal_width=200)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    rows = {dimension: cells for dimension, cells in report["rows"]}
    assert {a["name"] for a in report["arms"]} == {"zero-shot", "few-shot", "role", "lora", "lora+few-shot"}
    for name in ("rouge1", "rouge2", "chrf", "bleu", "embedding_similarity"):
        assert all("[" in cell for cell in rows[f"  {name}"].values())  # a value with its CI for every arm
    assert all("cut at the generation cap" in cell for cell in rows["Length & truncation"].values())
    assert set(rows["Bias & hallucinations"].values()) == {"n/a (free text)"}
    assert "rougeL" in rows["Performance"]["lora"]
    assert "paired bootstrap of rougeL" in json.dumps(report["verdict"]) or report["test"]["test"] == \
        "paired bootstrap of rougeL"
