"""TEMPORARY stand-in until the models branch merges (it owns this file)."""
from __future__ import annotations

from ..errors import TuneoffError, did_you_mean

DEFAULT_MODEL = "embedded:smollm2-135m-instruct"
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16", "auto": "auto"}
ENGINES = ("auto", "transformers", "llamacpp")


def canonical_dtype(name: str, field: str = "dtype") -> str:
    if name not in DTYPES:
        raise TuneoffError(f"unknown dtype '{name}'", field=field, hint=did_you_mean(name, list(DTYPES)))
    return DTYPES[name]


def check_engine(name: str, allowed=ENGINES, field: str = "engine") -> str:
    if name not in allowed:
        raise TuneoffError(f"unknown engine '{name}'", field=field, hint=did_you_mean(name, list(allowed)))
    return name
