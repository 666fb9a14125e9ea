"""The llama.cpp engine is probed in a child process before tuneoff's own process uses it: a build that
crashes at its first generation (AMX on virtualised Xeons) falls back to transformers with one line, and
the verdict is cached in TUNEOFF_HOME so each machine pays for the probe once.

    OMP_NUM_THREADS=1 python -m pytest -q tests/test_engine_probe.py
"""

from __future__ import annotations

import json

import pytest

from tuneoff.home import tuneoff_home
from tuneoff.models import ModelSpec, engine_probe, llamacpp

CRASH = "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n"
WORKS = "import sys\nprint('ok', sys.argv[1])\n"


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF")
    monkeypatch.setattr(llamacpp, "installed", lambda: True)  # llama-cpp-python need not be here
    monkeypatch.setattr(engine_probe, "build_key", lambda: "build-1")
    calls = []
    real = engine_probe.run_child
    monkeypatch.setattr(engine_probe, "run_child", lambda gguf, timeout_s=None: calls.append(gguf) or real(gguf, 30))
    return path, calls


def test_a_crashing_engine_falls_back_to_transformers_with_one_line(fake_gguf, monkeypatch, capsys):
    gguf, calls = fake_gguf
    monkeypatch.setattr(engine_probe, "PROBE_CODE", CRASH)
    for _ in range(2):
        generator, policy = llamacpp.generator_for(ModelSpec(str(gguf), engine="auto"), "cpu")
        assert generator is None and policy == "never"
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "SIGSEGV" in lines[0] and "GGML_NATIVE=OFF" in lines[0]
    assert "cached in" in lines[1] and len(calls) == 1  # the second load read the verdict, no child
    cache = json.loads((tuneoff_home() / engine_probe.CACHE_FILE).read_text())
    assert cache["build-1"]["ok"] is False
    # an explicit engine: llamacpp falls back the same way rather than crash the run
    assert llamacpp.generator_for(ModelSpec(str(gguf), engine="llamacpp"), "cpu") == (None, "never")


def test_a_working_engine_is_attached_and_a_new_build_is_probed_again(fake_gguf, monkeypatch, capsys):
    gguf, calls = fake_gguf
    monkeypatch.setattr(engine_probe, "PROBE_CODE", WORKS)
    generator, policy = llamacpp.generator_for(ModelSpec(str(gguf), engine="auto"), "cpu")
    assert isinstance(generator, llamacpp.LlamaCppGenerator) and policy == "single"
    assert generator._llm is None  # nothing loaded in this process until the first request
    monkeypatch.setattr(engine_probe, "build_key", lambda: "build-2")  # e.g. reinstalled without AMX
    monkeypatch.setattr(engine_probe, "PROBE_CODE", "import sys\nsys.exit('ImportError: libggml.so')\n")
    assert llamacpp.generator_for(ModelSpec(str(gguf), engine="auto"), "cpu") == (None, "never")
    assert len(calls) == 2 and "exited 1: ImportError: libggml.so" in capsys.readouterr().err


def test_a_probe_that_times_out_is_not_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(engine_probe, "PROBE_CODE", "import time\ntime.sleep(30)\n")
    monkeypatch.setattr(engine_probe, "build_key", lambda: "slow")
    monkeypatch.setattr(engine_probe, "TIMEOUT_S", 0.5)
    verdict = engine_probe.probe(tmp_path / "m.gguf", say=lambda line: None)
    assert not verdict.ok and verdict.why.startswith("timed out")
    assert not (tuneoff_home() / engine_probe.CACHE_FILE).exists()
