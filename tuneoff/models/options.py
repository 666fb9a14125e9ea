"""The model options every room names the same way: the default model, dtype names, devices, attention
kernels, generation engines.

One source of truth for each list, and cheap to import: config validation (an experiment file, a
fine-tune arm) checks a dtype string without loading torch. `local.resolve_dtype` maps the canonical
names to torch dtypes; nothing here may import torch, transformers, numpy or scipy (a test checks).
"""

from __future__ import annotations

import re

from ..errors import TuneoffError, did_you_mean

DEFAULT_MODEL = "embedded:smollm2-135m-instruct"
"""The model every command uses when none is named: small enough for a laptop CPU, and a chat model."""

DTYPES: dict[str, str] = {
    "float32": "float32", "fp32": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "int8": "int8", "qint8": "int8",
    "auto": "auto",
}
"""Accepted dtype names -> their canonical name. `auto` is bf16 where the hardware does it natively
(`tuneoff.models.local.resolve_precision`). `int8`: evaluation with the linear layers dynamically
quantised (CPU; `tuneoff.models.quantize`); training refuses it. float16 is left out on purpose:
training in it needs loss scaling, which the training path does not do, and CPUs have no fast fp16
matmul."""

ENGINES = ("auto", "transformers", "llamacpp")
"""Generation engines: `auto` picks llama.cpp for single requests on GGUF models when it is installed."""


def canonical_dtype(name: str, field: str = "dtype") -> str:
    """The canonical name (`float32`, `bfloat16`, `int8`, `auto`) of an accepted dtype name or alias, any case."""
    key = str(name).strip().lower()
    if key not in DTYPES:
        raise TuneoffError(f"unknown dtype '{name}'", field=field, hint=did_you_mean(key, list(DTYPES)))
    return DTYPES[key]


def check_engine(name: str, allowed: tuple[str, ...] = ENGINES, field: str = "engine") -> str:
    """`name` if it is one of `allowed` (a subset of ENGINES: an experiment has no `auto`), else a user error."""
    if name in allowed:
        return name
    known = name in ENGINES  # a real engine this setting does not take reads differently from a typo
    message = f"engine '{name}' cannot be used here" if known else f"unknown engine '{name}'"
    hint = "one of: " + ", ".join(allowed) if known else did_you_mean(str(name), list(allowed))
    raise TuneoffError(message, field=field, hint=hint)


ATTENTION = ("auto", "sdpa", "eager", "flash_attention_2")
"""Attention kernels a model may load with (transformers' `attn_implementation`). `auto`: transformers'
default (SDPA where the architecture has it). `flash_attention_2` needs CUDA and the flash-attn package;
without them the load falls back to SDPA with a warning (`tuneoff.models.local.resolve_attention`)."""


def check_device(name: str | None, field: str = "device") -> str | None:
    """`name` if it is `auto`, `cpu`, `cuda` or `cuda:N` (None stays None: the caller's default), else a
    user error. Whether the machine has that device is checked when a model loads (`local.resolve_device`)."""
    if name is None or re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(name)):
        return name
    raise TuneoffError(f"unknown device '{name}'", field=field, hint="one of: auto, cpu, cuda, cuda:N (N: the GPU index)")


def check_attention(name: str, field: str = "attn_implementation") -> str:
    """`name` if it is one of ATTENTION, else a user error with a "did you mean"."""
    if name in ATTENTION:
        return name
    raise TuneoffError(f"unknown attention implementation '{name}'", field=field,
                       hint=did_you_mean(str(name), list(ATTENTION)))
