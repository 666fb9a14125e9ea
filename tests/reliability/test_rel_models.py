"""Untrusted model files: a pickle never runs, remote code is never asked for, and every broken
file (truncated safetensors, junk GGUF, bad config or tokenizer JSON, wrong shapes) is one clear
`TuneoffError` naming the file."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import pytest

from tuneoff.errors import TuneoffError
from tuneoff.models import ModelSpec, load_model

from .helpers import TALLY

MARK = "/tmp/tuneoff-reliability-pickle-ran"


class Evil:
    """Unpickling this runs a shell command: the attack a pickled checkpoint can carry."""

    def __reduce__(self):
        return (os.system, (f"touch {MARK}",))


def _pickle_weights(p, name="pytorch_model.bin"):
    (p / "model.safetensors").unlink()
    with open(p / name, "wb") as f:
        pickle.dump(Evil(), f)


def _torch_bin(p):
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(str(p / "model.safetensors")), p / "pytorch_model.bin")  # a benign pickle
    (p / "model.safetensors").unlink()


def _edit_config(**changes):
    def edit(p):
        config = json.loads((p / "config.json").read_text())
        config.update(changes)
        (p / "config.json").write_text(json.dumps(config))
    return edit


def _truncate(name, keep=0.5):
    def cut(p):
        data = (p / name).read_bytes()
        (p / name).write_bytes(data[:int(len(data) * keep)])
    return cut


CASES = {
    "malicious pytorch_model.bin": (_pickle_weights, "pickle"),
    "malicious model.pt": (lambda p: _pickle_weights(p, "model.pt"), "pickle"),
    "benign pytorch_model.bin": (_torch_bin, "pickle"),
    "auto_map (remote code)": (_edit_config(auto_map={"AutoModelForCausalLM": "evil.Model"}), "own Python code"),
    "trust_remote_code": (_edit_config(trust_remote_code=True), "own Python code"),
    "truncated safetensors": (_truncate("model.safetensors"), "cannot load the model"),
    "safetensors header only": (_truncate("model.safetensors", 0.001), "cannot load the model"),
    "junk safetensors": (lambda p: (p / "model.safetensors").write_bytes(os.urandom(4096)), "cannot load the model"),
    "config not JSON": (lambda p: (p / "config.json").write_text("{model_type: llama"), "not a valid JSON config"),
    "config a list": (lambda p: (p / "config.json").write_text("[1, 2]"), "not a JSON object"),
    "tokenizer not JSON": (lambda p: (p / "tokenizer.json").write_text("{bad"), "cannot load the model"),
    "shape mismatch": (_edit_config(hidden_size=64, intermediate_size=128), "cannot load the model"),
    "unknown architecture": (_edit_config(model_type="no-such-arch", architectures=["Nope"]), "cannot load the model"),
}


@pytest.fixture(scope="module")
def good_dir(tiny_dir):
    """The tiny Llama folder every case copies and breaks (conftest's, never edited in place)."""
    return tiny_dir


@pytest.mark.parametrize("case", list(CASES))
def test_bad_model_folders_are_refused_clearly(good_dir, tmp_path, case):
    edit, message = CASES[case]
    path = tmp_path / "model"
    shutil.copytree(good_dir, path)
    edit(path)
    if os.path.exists(MARK):
        os.unlink(MARK)
    TALLY["inputs"] += 1
    with pytest.raises(TuneoffError, match=message) as info:
        load_model(ModelSpec(str(path), device="cpu"))
    assert str(path) in info.value.file and info.value.field == "model"
    assert "weights_only=False" not in str(info.value)  # never advise the unsafe way round
    assert not os.path.exists(MARK), "a pickle ran code"


@pytest.mark.parametrize("payload", [b"GGUF" + os.urandom(64), b"GGUF\x03\x00\x00\x00" + b"\xff" * 64, b"", b"not gguf"])
def test_junk_gguf_is_refused_clearly(tmp_path, payload):
    path = tmp_path / "model.gguf"
    path.write_bytes(payload)
    TALLY["inputs"] += 1
    with pytest.raises(TuneoffError) as info:
        load_model(ModelSpec(str(path), device="cpu"))
    assert str(path) in str(info.value)


def test_an_adapter_with_pickled_weights_is_refused(good_dir, tmp_path):
    path = tmp_path / "adapter"
    path.mkdir()
    (path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(good_dir),
                                                          "peft_type": "LORA"}))
    with open(path / "adapter_model.bin", "wb") as f:
        pickle.dump(Evil(), f)
    TALLY["inputs"] += 1
    with pytest.raises(TuneoffError, match="pickle"):
        load_model(ModelSpec(str(path), device="cpu"))
    assert not os.path.exists(MARK)


def test_the_good_folder_still_loads(good_dir):
    model, tokenizer, info = load_model(ModelSpec(str(good_dir), device="cpu"))
    assert info.parameters > 0
