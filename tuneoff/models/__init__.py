"""Models: specs, the backend interface, and the registry that turns one into the other.

    load_backend("embedded:smollm2-135m-instruct")          # local transformers (+ llama.cpp)
    load_backend(ModelSpec("runs/sst2/lora", dtype="bf16"))  # a fine-tune's output directory

Where things live: `options` (default model, dtype and engine names; torch-free), `spec` (ModelSpec),
`registry` (backend kinds), `base` (the Backend protocol), `local` + `scoring` (the transformers
backend), `weights` (local files -> transformers), `chat` (chat templates), `embedded`, `llamacpp`.
Importing this package does not import torch: the heavy modules load when a backend is built.
"""

from __future__ import annotations

import os

from .base import Backend, BackendInfo, Completion, GenerationConfig, Score, engine_of
from .options import DEFAULT_MODEL, DTYPES, ENGINES, canonical_dtype, check_engine
from .registry import backend_kinds, register_backend
from .spec import ModelSpec, create_backend
from .weights import adapter_base, load_fast_tokenizer, load_model, load_tokenizer, resolve_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub, even by accident

__all__ = [
    "Backend", "BackendInfo", "Completion", "GenerationConfig", "Score", "engine_of",
    "DEFAULT_MODEL", "DTYPES", "ENGINES", "canonical_dtype", "check_engine",
    "ModelSpec", "backend_kinds", "create_backend", "load_backend", "register_backend",
    "adapter_base", "load_fast_tokenizer", "load_model", "load_tokenizer", "resolve_dir",
]


def load_backend(spec: ModelSpec | str) -> Backend:
    """A ready-to-call backend for a spec (a string is read as `ModelSpec(name)`), built by its kind."""
    return create_backend(ModelSpec(spec) if isinstance(spec, str) else spec)
