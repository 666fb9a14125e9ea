"""examples/dialogsum.yaml on a handful of items with the embedded SmolLM2-135M (real weights): the report
has the reference-metric rows with CIs, the length and truncation rows, and no label figure."""

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.embedded

EXAMPLE = Path(__file__).parents[1] / "examples" / "dialogsum.yaml"
SMALL = ["task.n_test=2", "task.n_train=12", "arms.lora.finetune.n_train=8", "arms.lora.finetune.epochs=1",
         "curves.shots=[0, 2]", "curves.n_train=[8]", "probe.items=0",  # curve points the arms' own runs answer
         *[f"arms.{arm}.prompt.max_new_tokens=16" for arm in ("zero-shot", "few-shot", "role", "lora", "lora+few-shot")]]
"""A handful of items: 2 test dialogues, a pool of 12, 8 training pairs, 16-token replies (minutes on 2 cores)."""


def test_dialogsum_example_runs_on_the_embedded_model(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import REAL_HOME

    # a child process: the model, MiniLM and a LoRA training would otherwise stay in the test process's
    # heap and its peak RSS (tests/test_memory.py measures per-phase peaks in this process)
    args = [sys.executable, "-m", "tuneoff", "run", str(EXAMPLE), "--store", str(tmp_path / "s.sqlite"),
            "--set", f"output={tmp_path / 'out'}"]
    for override in SMALL:
        args += ["--set", override]
    env = {**os.environ, "TUNEOFF_HOME": REAL_HOME,  # the embedded model's dequantised cache
           "PYTHONPATH": str(EXAMPLE.parents[1])}
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
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
