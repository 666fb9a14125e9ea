"""`tuneoff validate` counts tokens with the model's tokenizer.json through the `tokenizers` library:
the same counts as transformers, without importing torch or transformers."""

import subprocess
import sys

import pytest

from tuneoff.models import load_fast_tokenizer, load_tokenizer

TEXTS = ["hi", "Is the sentiment of this movie review positive or negative?", "  spaces\tand\nnewlines  ",
         "café — naïve façade, 東京, emoji 🎬🍿", "", "1,234.5 + 6 = 1240.5", "<|im_start|>user"]


@pytest.mark.parametrize("model", ["tiny", "embedded:smollm2-135m-instruct"])
def test_tokenizer_json_counts_equal_transformers(model, tiny_model_dir, monkeypatch):
    from conftest import REAL_HOME

    name = str(tiny_model_dir) if model == "tiny" else model
    if model != "tiny":
        monkeypatch.setenv("TUNEOFF_HOME", REAL_HOME)  # the embedded model's cached conversion
    fast, slow = load_fast_tokenizer(name), load_tokenizer(name)
    ours = [len(e.ids) for e in fast.encode_batch(TEXTS, add_special_tokens=False)]
    theirs = [len(ids) for ids in slow(TEXTS, add_special_tokens=False)["input_ids"]]
    assert ours == theirs


def test_validate_imports_nothing_heavy(tmp_path, tiny_model_dir):
    data = tmp_path / "two.jsonl"
    data.write_text('{"prompt": "hi", "completion": "hello"}\n{"prompt": "bye", "completion": "ciao"}\n')
    code = ("import sys\nfrom tuneoff.cli import main\n"
            f"sys.argv = ['tuneoff', 'validate', {str(data)!r}, '-m', {str(tiny_model_dir)!r}]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
            "print('HEAVY', sorted(m for m in ('torch', 'transformers', 'scipy') if m in sys.modules), code)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "HEAVY [] 0" in out.stdout, out.stdout + out.stderr
    assert "length (tokens)" in out.stdout
