"""Backend kinds: which code turns a model spec into a ready `Backend`.

A spec's prefix picks its kind: `embedded:NAME`, a directory or a `.gguf` file is `local`
(transformers); a registered `KIND:` prefix is that kind. Adding a backend is one module with a
factory `load(spec: ModelSpec) -> Backend` plus one line in `BUILTIN` below, e.g. an
OpenAI-compatible server:

    BackendKind("openai", "tuneoff.models.openai:load", prefixes=("openai:", "http://", "https://")),

Factories are named as `module:function` strings and imported on first use, so listing the kinds
(or validating a spec) never imports torch. Code outside the package (plugins, tests) registers a
callable with `register_backend`.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Union

from ..errors import TuneoffError, did_you_mean

if TYPE_CHECKING:
    from .base import Backend

Factory = Callable[[Any], "Backend"]
"""`factory(spec)`: a `ModelSpec` (which reads its kind from here, so this module names no spec class) -> a Backend."""

LOCAL = "local"
"""The kind of specs without a registered prefix: paths to local weights."""


@dataclass(frozen=True)
class BackendKind:
    """One way to build a backend from a spec."""

    name: str
    factory: Union[str, Factory]
    """`module:function`, imported on first use, or the callable itself."""
    prefixes: tuple[str, ...] = ()
    """Spec prefixes that select this kind; default `NAME:`."""

    def __post_init__(self):
        object.__setattr__(self, "prefixes", tuple(self.prefixes) or (f"{self.name}:",))

    def load(self, spec: Any) -> Backend:
        """A ready backend for `spec` (a `ModelSpec` of this kind)."""
        factory = self.factory
        if isinstance(factory, str):
            module, _, function = factory.partition(":")
            factory = getattr(importlib.import_module(module), function)
        return factory(spec)


BUILTIN = (
    BackendKind(LOCAL, "tuneoff.models.weights:load", prefixes=("embedded:",)),  # and any path: see kind_of
    BackendKind("openai", "tuneoff.models.openai:load", prefixes=("openai:", "http://", "https://")),
)

BACKENDS: dict[str, BackendKind] = {k.name: k for k in BUILTIN}
"""Every known kind by name: the built-in table plus whatever `register_backend` added."""

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
"""`kind:` at the start of a spec; two characters at least, so `C:\\models` stays a path."""


def register_backend(kind: str, factory: Union[str, Factory], prefixes: tuple[str, ...] = (),
                     replace: bool = False) -> BackendKind:
    """Make specs starting with one of `prefixes` (default `KIND:`) load through `factory(spec)`."""
    if kind in BACKENDS and not replace:
        raise ValueError(f"backend kind '{kind}' is already registered (pass replace=True to override it)")
    entry = BackendKind(kind, factory, tuple(prefixes))
    BACKENDS[kind] = entry
    return entry


def backend_kinds() -> list[str]:
    """Names of the registered kinds."""
    return list(BACKENDS)


def backend_kind(kind: str) -> BackendKind:
    """The registered kind of that name (`kind_of` names it)."""
    return BACKENDS[kind]


def kind_of(name: str) -> str:
    """The kind a spec string loads through; an unregistered `kind:` prefix is a user error."""
    for entry in BACKENDS.values():
        if name.startswith(entry.prefixes):
            return entry.name
    scheme = _SCHEME.match(name)
    if scheme and not Path(name).expanduser().exists():
        known = sorted({p.split(":")[0] for e in BACKENDS.values() for p in e.prefixes})
        raise TuneoffError(f"unknown model kind '{scheme.group(1)}:' in '{name}'", field="model",
                           hint=f"{did_you_mean(scheme.group(1), known)} (or a local model directory or .gguf file)")
    return LOCAL

