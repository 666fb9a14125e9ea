"""`ModelSpec`: which model, in which precision, on which device, behind which backend. Torch-free."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import TuneoffError
from .decode import check_decode
from .options import DEFAULT_MODEL, canonical_dtype, check_attention, check_device, check_engine
from .registry import backend_kind, kind_of

if TYPE_CHECKING:
    from .base import Backend


@dataclass(frozen=True)
class ModelSpec:
    """Which model, in which precision, on which device."""

    name: str = DEFAULT_MODEL
    """`embedded:NAME`, a local HF or adapter directory, a `.gguf` file, or `KIND:...` for another
    registered backend kind (`tuneoff.models.registry`). The prefix picks the backend: see `kind`."""
    dtype: str = "float32"
    """`float32` (`fp32`), `bfloat16` (`bf16`), `int8` (CPU evaluation with int8 linear layers), or `auto`
    (bf16 where the hardware does it natively); stored under its canonical name, so `bf16` and `bfloat16`
    make equal specs."""
    device: str | None = None
    """`auto` (the default, also None): CUDA when present, else CPU; or `cpu`, `cuda`, `cuda:N`."""
    batch_size: int = 16
    """Requests per forward pass in generation and scoring."""
    engine: str = "auto"
    """Generation engine: `transformers`, `llamacpp` (GGUF models, needs the llamacpp extra), or `auto`:
    llama.cpp for single requests when it is installed and the model is a GGUF, transformers otherwise."""
    attn_implementation: str = "auto"
    """Attention kernel (`tuneoff.models.options.ATTENTION`): `auto` is transformers' default (SDPA);
    `flash_attention_2` on CUDA with flash-attn installed, else SDPA with a warning. Label scoring packs
    rows with custom masks that FlashAttention does not take: keep `auto` for evaluation."""

    decode: str = "eager"
    """`eager` (default) or `compiled`: transformers generation with a static KV cache and a torch.compile'd
    decode step (`tuneoff.models.decode`); compile time is paid once per shape bucket."""

    def __post_init__(self):
        if not self.name:
            raise TuneoffError("a model spec cannot be empty", field="model")
        object.__setattr__(self, "dtype", canonical_dtype(self.dtype))
        check_engine(self.engine)
        check_device(self.device)
        check_attention(self.attn_implementation)
        check_decode(self.decode)
        if self.batch_size < 1:
            raise TuneoffError("must be >= 1", field="batch_size")
        _ = self.kind  # an unknown `kind:` prefix is a user error now, not at load time

    @property
    def kind(self) -> str:
        """The registered backend kind this spec loads through (`local` for paths and `embedded:`)."""
        return kind_of(self.name)


def create_backend(spec: ModelSpec) -> Backend:
    """A ready backend for a spec, built by its kind's factory (`tuneoff.models.registry`)."""
    return backend_kind(spec.kind).load(spec)
