"""Model specs and how each resolves to a backend.

A spec is a string:
  - `embedded:NAME`       a model shipped inside a PyPI package (see `tuneoff models`)
  - a local HF directory  (config.json + safetensors), including a full fine-tune's output
  - an adapter directory  (adapter_config.json, written by `tuneoff finetune`): base + adapter
  - a `.gguf` file        dequantised once and cached as safetensors
No spec ever reaches for a hub: every load is `local_files_only`.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import TuneoffError
from .base import Backend, BackendInfo, Completion, GenerationConfig, Score  # noqa: F401 (re-export)
from .embedded import DEFAULT_MODEL, get_embedded, gguf_cache_dir, materialize, materialize_gguf

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub, even by accident


@dataclass(frozen=True)
class ModelSpec:
    """Which model, in which precision, on which device."""

    name: str = DEFAULT_MODEL
    """`embedded:NAME`, a local HF or adapter directory, or a `.gguf` file."""
    dtype: str = "float32"
    """`float32`, `bfloat16`, or `auto` (bf16 where the hardware does it natively)."""
    device: str | None = None
    """`cpu` or `cuda`; default: CUDA when present."""
    batch_size: int = 16
    """Requests per forward pass in generation and scoring."""
    engine: str = "auto"
    """Generation engine: `transformers`, `llamacpp` (GGUF models, needs the llamacpp extra), or `auto`:
    llama.cpp for single requests when it is installed and the model is a GGUF, transformers otherwise."""

    def __post_init__(self):
        if not self.name:
            raise TuneoffError("a model spec cannot be empty", field="model")
        from .llamacpp import ENGINES
        if self.engine not in ENGINES:
            raise TuneoffError(f"unknown engine '{self.engine}'", field="engine", hint=f"one of: {', '.join(ENGINES)}")
        if self.batch_size < 1:
            raise TuneoffError("must be >= 1", field="batch_size")


def resolve_dir(name: str) -> Path:
    """The local HF directory (weights + tokenizer) a spec stands for, materialising caches."""
    if name.startswith("embedded:"):
        return materialize(get_embedded(name.split(":", 1)[1]))
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        return materialize_gguf(path, gguf_cache_dir(path))
    if path.is_dir() and (path / "adapter_config.json").exists():
        return path
    if path.is_dir() and (path / "config.json").exists():
        return path
    if ":" in name and not path.exists():
        raise TuneoffError(f"unknown model kind in '{name}'", field="model",
                           hint="use embedded:NAME, a local model directory, or a .gguf file")
    raise TuneoffError(f"no model at '{name}'", field="model",
                       hint="expected a directory with config.json or adapter_config.json, a .gguf file, "
                            "or embedded:NAME (see `tuneoff models`)")


def adapter_base(path: Path) -> str | None:
    """The base spec of an adapter directory written by tuneoff, else None."""
    meta = path / "tuneoff.json"
    if (path / "adapter_config.json").exists():
        if meta.exists():
            return json.loads(meta.read_text()).get("base")
        return json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
    return None


def load_tokenizer(name: str = DEFAULT_MODEL):
    from transformers import AutoTokenizer

    path = resolve_dir(name)
    base = adapter_base(path)
    if base and not (path / "tokenizer_config.json").exists():
        path = resolve_dir(base)
    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def load_model(spec: ModelSpec, trainable: bool = False):
    """(model, tokenizer, info) for a spec. Adapters are merged for inference unless `trainable`."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from .local import default_device, resolve_dtype

    hf_logging.disable_progress_bar()  # a cached load takes ~1 s: the callers show their own status

    device = spec.device or default_device()
    dtype = resolve_dtype(spec.dtype, device)
    path = resolve_dir(spec.name)
    base = adapter_base(path)
    start = time.perf_counter()
    if base:
        from peft import PeftModel

        base_model = AutoModelForCausalLM.from_pretrained(resolve_dir(base), dtype=dtype, local_files_only=True)
        with warnings.catch_warnings():
            # peft 0.21 reads transformers' deprecated `is_gradient_checkpointing` while it wraps the
            # base model (once per adapter load: each LoRA arm's eval, merge); not ours to fix
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
            model = PeftModel.from_pretrained(base_model, path, is_trainable=trainable)
        if not trainable:
            model = model.merge_and_unload()  # one plain model: no adapter overhead per token
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    model.to(device)
    tokenizer = load_tokenizer(spec.name)
    info = BackendInfo(name=spec.name, dtype=str(dtype).replace("torch.", ""), device=device,
                       parameters=sum(p.numel() for p in model.parameters()),
                       extra={"load_seconds": round(time.perf_counter() - start, 3), "base": base})
    del torch
    return model, tokenizer, info


def load_backend(spec: ModelSpec | str) -> Backend:
    """A ready-to-call backend for a spec."""
    from .local import TransformersBackend

    spec = ModelSpec(spec) if isinstance(spec, str) else spec
    model, tokenizer, info = load_model(spec)
    backend = TransformersBackend(model, tokenizer, info, batch_size=spec.batch_size)
    backend.generator, backend.generator_policy = _generator(spec, info.device)
    return backend


def engine_of(backend, batched: bool = False) -> str:
    """The engine that serves a backend's generation: `llamacpp` or `transformers`."""
    if getattr(backend, "generator", None) is None or (batched and backend.generator_policy != "always"):
        return "transformers"
    return "llamacpp"


def _generator(spec: ModelSpec, device: str):
    """(llama.cpp generator or None, policy) for a spec: see `tuneoff.models.llamacpp`."""
    from . import llamacpp

    if spec.engine == "transformers" or device != "cpu":
        return None, "never"
    gguf = llamacpp.gguf_of(spec.name)
    if spec.engine == "llamacpp" and gguf is None:
        raise TuneoffError(f"the llama.cpp engine needs a GGUF model, and '{spec.name}' is not one",
                           field="engine", hint="use engine: transformers (or auto) for this model")
    if spec.engine == "auto" and (gguf is None or not llamacpp.installed()):
        return None, "never"
    import torch

    policy = "always" if spec.engine == "llamacpp" else "single"
    return llamacpp.LlamaCppGenerator(gguf, torch.get_num_threads()), policy
