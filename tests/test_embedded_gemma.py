"""Integration on the real embedded Gemma-3-270M, a base model: it is sent text to continue, not chat.
(The first load ever dequantises its GGUF, ~45 s; then it is read from the TUNEOFF_HOME cache in seconds.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.embedded

GEMMA = "embedded:gemma3-270m"
ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def gemma():
    import os

    from conftest import REAL_HOME
    from tuneoff.models import load_backend
    from tuneoff.models.embedded import get_embedded

    if not get_embedded("gemma3-270m").installed():
        pytest.fail("the Gemma-3-270M packages are not installed: run `bash scripts/setup.sh`")
    saved = os.environ.get("TUNEOFF_HOME")
    os.environ["TUNEOFF_HOME"] = REAL_HOME  # reuse the dequantised cache
    try:
        return load_backend(GEMMA)
    finally:
        os.environ.pop("TUNEOFF_HOME") if saved is None else os.environ.__setitem__("TUNEOFF_HOME", saved)


def test_few_shot_translation_on_gemma_answers_in_french(gemma):
    from tuneoff.config.specs import load_spec
    from tuneoff.config.experiment import load_task_data
    from tuneoff.evaluate.engine import evaluate
    from tuneoff.prompting import PromptArm

    assert gemma.info.chat is False
    data = load_task_data(ROOT / "examples/translation-task.yaml")
    arm = load_spec(PromptArm, ROOT / "examples/arms/translation.yaml")
    result = evaluate(gemma, arm, data.test, data)
    outputs = {p["input"]: p["output"].strip() for p in result.predictions}
    # measured: fromage / bonne journée / merci beaucoup / la voiture rouge / je suis fan de musique / ...
    assert outputs["cheese"] == "fromage" and outputs["thank you very much"] == "merci beaucoup"
    for english, french in outputs.items():
        assert french and english not in french, (english, french)  # an answer, not an echo of the item
        assert "English" not in french and "Input" not in french and len(french.split()) <= 8
    assert result.main.value > 40  # chrF; the echo loops scored 12


def test_ask_completes_a_field_prompt_on_gemma(gemma, tmp_path):
    from tuneoff.ask import ask
    from tuneoff.models import GenerationConfig, ModelSpec
    from tuneoff.store import Store

    result = ask("English: thank you\nFrench:", ModelSpec(GEMMA), Store(tmp_path / "s.sqlite"), backend=gemma,
                 config=GenerationConfig(max_new_tokens=32))
    assert result.format == "completion" and result.completion.text.strip() == "merci"


def test_ask_cli_continues_a_plain_prompt_on_gemma(tmp_path, monkeypatch):
    from conftest import REAL_HOME
    from tuneoff.cli import build_app
    from tuneoff.store import Store

    monkeypatch.setenv("TUNEOFF_HOME", REAL_HOME)
    db = tmp_path / "s.sqlite"
    result = CliRunner().invoke(build_app(), ["ask", "The capital of France is", "-m", GEMMA, "--store", str(db),
                                              "--max-tokens", "128", "--engine", "transformers"])
    assert result.exit_code == 0, result.output
    call = Store(db).db.execute("SELECT * FROM calls").fetchone()
    assert call["prompt"] == "The capital of France is"  # sent as is, no "Input: ... Output:" wrapping
    assert "Input:" not in call["output"] and "Output:" not in call["output"]
    assert call["finish_reason"] == "stop" and call["tokens_out"] < 128  # ended at a blank line
