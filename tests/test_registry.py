"""The backend registry, the shared model options (dtype and engine names), and how a backend
declares its generation engine. Run: OMP_NUM_THREADS=1 python -m pytest -q tests/test_registry.py"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_evaluate import CTX, SCRIPT, FakeBackend, sentiment  # the scripted fake of the engine's tests

from tuneoff.errors import TuneoffError
from tuneoff.evaluate import evaluate
from tuneoff.evaluate.engine import model_id
from tuneoff.finetune import FinetuneArm
from tuneoff.models import ModelSpec, backend_kinds, engine_of, load_backend, register_backend, registry
from tuneoff.models.base import BackendInfo, Completion, GenerationConfig
from tuneoff.models.options import DEFAULT_MODEL, ENGINES, canonical_dtype, check_engine
from tuneoff.prompting import PromptArm
from tuneoff.config.specs import from_dict
from tuneoff.store import Store

CHAT = [{"role": "user", "content": "the movie was great"}]


@pytest.fixture
def kinds(monkeypatch):
    """A private copy of the registry table: what a test registers is gone after it."""
    monkeypatch.setattr(registry, "BACKENDS", dict(registry.BACKENDS))
    return registry.BACKENDS


# -- registry -------------------------------------------------------------------------------------
def test_a_registered_fake_backend_loads_from_its_spec_and_runs_an_evaluation(kinds):
    built = []

    def fake(spec: ModelSpec) -> FakeBackend:
        built.append(spec)
        backend = FakeBackend(SCRIPT)
        backend.info = BackendInfo(name=spec.name, kind="fake")
        return backend

    register_backend("fake", fake)
    assert "fake" in backend_kinds() and ModelSpec("fake:sst").kind == "fake"
    backend = load_backend("fake:sst")
    assert isinstance(backend, FakeBackend) and [s.name for s in built] == ["fake:sst"]
    result = evaluate(backend, PromptArm(name="zero"), sentiment(), CTX, store=Store(":memory:"))
    assert result.metrics["accuracy"].value == pytest.approx(0.5)  # the numbers of the unregistered fake
    assert model_id(backend) == "fake:sst|float32" and engine_of(backend) == "transformers"


def server_backend(spec: ModelSpec) -> FakeBackend:
    return FakeBackend(SCRIPT)


def test_a_kind_may_claim_url_prefixes_and_load_lazily(kinds):
    # the built-in OpenAI-compatible kind claims plain URLs; a plugin claims its own prefixes, lazily imported
    assert ModelSpec("http://localhost:8000/v1").kind == "openai" == ModelSpec("openai:gpt-4o-mini").kind
    register_backend("server", "test_registry:server_backend", prefixes=("srv+http://", "srv+https://"))
    assert ModelSpec("srv+http://localhost:8000/v1").kind == "server"
    assert isinstance(load_backend("srv+https://example.invalid/v1"), FakeBackend)


def test_registering_a_kind_twice_needs_replace(kinds):
    register_backend("fake", FakeBackend)
    with pytest.raises(ValueError, match="already registered"):
        register_backend("fake", FakeBackend)
    register_backend("fake", lambda spec: FakeBackend(SCRIPT), replace=True)


def test_unknown_kind_is_a_user_error_with_a_hint(kinds):
    register_backend("fake", FakeBackend)
    with pytest.raises(TuneoffError, match="unknown model kind 'fak:'") as info:
        ModelSpec("fak:sst")
    assert info.value.field == "model" and "did you mean 'fake'" in info.value.hint
    with pytest.raises(TuneoffError, match="unknown model kind") as info:
        load_backend("zzz:gpt-4o-mini")
    assert "embedded" in info.value.hint and "openai" in info.value.hint and "directory" in info.value.hint


def test_specs_without_a_kind_prefix_are_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "v1:tuned").mkdir()  # a directory whose name happens to hold a colon
    for name in (DEFAULT_MODEL, "v1:tuned", "runs/sst2/lora", str(tmp_path / "model.gguf"), "C:\\models\\x"):
        assert ModelSpec(name).kind == "local"


# -- options: one list of dtype names, the same everywhere ---------------------------------------
@pytest.mark.parametrize("name, canonical", [("bf16", "bfloat16"), ("bfloat16", "bfloat16"), ("BF16", "bfloat16"),
                                             ("fp32", "float32"), ("float32", "float32"), ("auto", "auto")])
def test_dtype_aliases_are_accepted_everywhere_the_same(name, canonical):
    import torch

    from tuneoff.models.local import resolve_dtype

    assert canonical_dtype(name) == canonical
    assert ModelSpec(dtype=name).dtype == canonical and ModelSpec(dtype=name) == ModelSpec(dtype=canonical)
    assert FinetuneArm(dtype=name).dtype == canonical
    assert from_dict(FinetuneArm, {"dtype": name}).dtype == canonical
    if canonical != "auto":
        assert resolve_dtype(name, "cpu") == getattr(torch, canonical)


@pytest.mark.parametrize("build", [lambda: canonical_dtype("fp16"), lambda: ModelSpec(dtype="fp16"),
                                   lambda: FinetuneArm(dtype="fp16"),
                                   lambda: from_dict(FinetuneArm, {"dtype": "bfloat61"}, file="exp.yaml")])
def test_unknown_dtype_names_the_field_and_the_known_names(build):
    with pytest.raises(TuneoffError) as info:
        build()
    assert info.value.field == "dtype" and info.value.hint


def test_engines_check_against_the_allowed_subset():
    assert check_engine("llamacpp") == "llamacpp"
    with pytest.raises(TuneoffError, match="unknown engine") as info:
        check_engine("llama")
    assert "did you mean 'llamacpp'" in info.value.hint
    with pytest.raises(TuneoffError, match="cannot be used here") as info:
        check_engine("auto", allowed=ENGINES[1:], field="engine")
    assert info.value.field == "engine" and info.value.hint == "one of: transformers, llamacpp"


def test_options_and_the_models_package_import_without_torch():
    code = ("import sys, tuneoff.models.options, tuneoff.models\n"
            "tuneoff.models.ModelSpec('embedded:smollm2-135m-instruct', dtype='bf16', engine='transformers')\n"
            "print(sorted(m for m in ('torch', 'transformers', 'numpy', 'scipy') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- engines: the backend declares which engine serves what ---------------------------------------
class ScriptedGenerator:
    """Stands in for a llama.cpp generator: answers every prompt with the same text."""

    def __init__(self):
        self.prompts = []

    def generate(self, prompts, config):
        self.prompts += prompts
        return [Completion("llama says hi", len(p), 3, 0.01) for p in prompts]


@pytest.mark.parametrize("policy, single, batched", [("never", "transformers", "transformers"),
                                                     ("single", "llamacpp", "transformers"),
                                                     ("always", "llamacpp", "llamacpp")])
def test_the_generator_is_passed_in_and_the_engine_declared(tiny_llama, policy, single, batched):
    from tuneoff.models.local import TransformersBackend

    model, tok = tiny_llama
    generator = ScriptedGenerator()
    backend = TransformersBackend(model, tok, BackendInfo(name="tiny"), generator=generator, generator_policy=policy)
    assert (engine_of(backend), engine_of(backend, batched=True)) == (single, batched)
    assert model_id(backend) == "tiny|float32" + ("|llamacpp" if batched == "llamacpp" else "")
    config = GenerationConfig(max_new_tokens=3)
    assert (backend.generate_one(CHAT, config).text == "llama says hi") == (single == "llamacpp")
    assert (backend.generate([CHAT], config)[0].text == "llama says hi") == (batched == "llamacpp")


def test_a_policy_without_a_generator_is_a_bug(tiny_llama):
    from tuneoff.models.local import TransformersBackend

    model, tok = tiny_llama
    with pytest.raises(ValueError):
        TransformersBackend(model, tok, BackendInfo(name="tiny"), generator_policy="always")
