"""`tuneoff serve --gguf EXPORT` runs a fine-tuned arm's single requests on its GGUF export in llama.cpp and
keeps micro-batches in transformers; a llama.cpp that cannot run here leaves transformers serving.

The engine is a fake here (llama-cpp-python compiles for minutes; the selection is what is tested); with
llama-cpp-python installed, the last test serves a real export of the tiny model.

    OMP_NUM_THREADS=1 python -m pytest -q tests/test_serve_gguf.py
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tuneoff.models import Completion, GenerationConfig, engine_probe, llamacpp, load_backend
from tuneoff.serve import ServedArm, ServeOptions, ServerThread, build

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["the movie was great", "a dull film", "what a waste of time", "card payment refund"]


@pytest.fixture
def fake_engine(tmp_path, monkeypatch):
    """A GGUF file and a llama.cpp engine that answers "from llama.cpp" (and counts its calls)."""
    gguf = tmp_path / "lora.gguf"
    gguf.write_bytes(b"GGUF")
    calls = []

    def generate(self, prompts, config):
        calls.append([list(p) for p in prompts])
        return [Completion("from llama.cpp", len(p), 3, 0.01, 1, "stop") for p in prompts]

    monkeypatch.setattr(llamacpp, "installed", lambda: True)
    monkeypatch.setattr(llamacpp.LlamaCppGenerator, "generate", generate)
    monkeypatch.setattr(engine_probe, "build_key", lambda: "fake")
    monkeypatch.setattr(engine_probe, "PROBE_CODE", "print('ok')")
    return gguf, calls


def complete(server, text):
    r = httpx.post(server.url + "/completions", json={"model": "lora", "prompt": text, "max_tokens": 4,
                                                      "temperature": 0}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["text"]


def test_serve_runs_single_requests_on_the_gguf_export_and_batches_on_transformers(sharp_model_dir, fake_engine):
    gguf, calls = fake_engine
    app, backend = build(ServedArm("lora", str(sharp_model_dir)), ServeOptions(gguf=gguf, window_ms=200))
    assert backend.info.engine == "llamacpp" and backend.info.batch_engine == "transformers"
    local = load_backend(str(sharp_model_dir))
    with ServerThread(app) as server:
        alone = complete(server, TEXTS[0])
        with ThreadPoolExecutor(4) as pool:
            together = list(pool.map(lambda t: complete(server, t), TEXTS))
        batches = app.state.worker.batches
    assert alone == "from llama.cpp" and calls[0] == [local.encode(TEXTS[0])]
    # requests that arrived together went to transformers as a batch, with transformers' greedy answers
    expected = {t: c.text for t, c in zip(TEXTS, local.generate_ids([local.encode(t) for t in TEXTS],
                                                                     GenerationConfig(max_new_tokens=4)))}
    batched = [t for t, answer in zip(TEXTS, together) if answer != "from llama.cpp"]
    assert max(batches) > 1 and batched and all(together[TEXTS.index(t)] == expected[t] for t in batched)


def test_without_a_gguf_or_with_a_crashing_engine_serve_stays_on_transformers(sharp_model_dir, fake_engine,
                                                                              monkeypatch, capsys):
    gguf, calls = fake_engine
    _, plain = build(ServedArm("lora", str(sharp_model_dir)), ServeOptions())
    assert plain.generator is None and plain.info.engine == "transformers"
    monkeypatch.setattr(engine_probe, "build_key", lambda: "crashing")
    monkeypatch.setattr(engine_probe, "PROBE_CODE", "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    app, backend = build(ServedArm("lora", str(sharp_model_dir)), ServeOptions(gguf=gguf))
    assert backend.generator is None and "SIGSEGV" in capsys.readouterr().err
    with ServerThread(app) as server:
        assert complete(server, TEXTS[0]) != "from llama.cpp" and not calls


def test_a_missing_gguf_is_a_user_error(sharp_model_dir, tmp_path):
    from tuneoff.errors import TuneoffError

    with pytest.raises(TuneoffError, match="not a .gguf file"):
        build(ServedArm("lora", str(sharp_model_dir)), ServeOptions(gguf=tmp_path / "nothing.gguf"))


@pytest.mark.skipif(not llamacpp.installed(), reason="llama-cpp-python is not installed")
def test_a_real_export_serves_single_requests_in_llama_cpp(sharp_model_dir, tmp_path):
    from tuneoff.finetune.export import export_gguf

    out = export_gguf(str(sharp_model_dir), tmp_path / "sharp.gguf").path
    app, backend = build(ServedArm("lora", str(sharp_model_dir)), ServeOptions(gguf=out))
    assert backend.info.engine == "llamacpp"
    with ServerThread(app) as server:
        text = complete(server, TEXTS[0])
    ids = backend.encode(TEXTS[0])
    assert text == backend.generator.generate([ids], GenerationConfig(max_new_tokens=4))[0].text
