"""What a fine-tune leaves behind, and `merge`: a fine-tuned model is a model like any other.

LoRA writes a peft adapter directory (adapter_config.json + adapter_model.safetensors), full and
freeze a complete HF directory; both get the tokenizer (with its chat template) and `tuneoff.json`
({"base", "method", "arm", ...}). `tuneoff.models.load_model` reads either: an adapter as its base
plus the adapter, merged for inference. An adapter names its base as a spec (`embedded:NAME`) in
`tuneoff.json` and as the hub repository in adapter_config.json, never as a path into TUNEOFF_HOME:
copied to another directory, user or machine, it still loads. `tuneoff.json` is written last, so its presence means the
directory is finished.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..errors import TuneoffError
from ..records import MODEL_META as META
from ..records import read_model_meta


def base_spec(model: str) -> str:
    """The base model as a spec that resolves from any working directory."""
    return model if model.startswith("embedded:") else str(Path(model).expanduser().resolve())


def is_finished(output_dir: Path) -> bool:
    has_model = (output_dir / "adapter_config.json").exists() or (output_dir / "config.json").exists()
    return has_model and (output_dir / META).exists()


def write_meta(directory: Path, meta: dict) -> None:
    tmp = directory / f".{META}.tmp"
    tmp.write_text(json.dumps(meta, indent=2, default=str))
    os.replace(tmp, directory / META)  # atomic: a reader sees the old file or the whole new one


def write_model(model, tokenizer, output_dir: Path, meta: dict) -> None:
    """Save weights (adapter or full) + tokenizer, then `tuneoff.json` as the finished mark."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / META).unlink(missing_ok=True)  # unfinished until the weights are all down
    if hasattr(model, "peft_config"):
        _save_adapter(model, output_dir, meta["base"])
    else:
        model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    write_meta(output_dir, meta)


def _save_adapter(model, output_dir: Path, base: str) -> None:
    """Save a peft adapter that names its base by hub name (or spec), not by where it was loaded from."""
    from ..models.weights import hub_base

    # peft records the base's load path, inside this machine's TUNEOFF_HOME, in adapter_config.json and
    # in the model card; a hub name loads anywhere, and `adapter_base` maps it back to the local copy
    name = hub_base(base)
    for config in model.peft_config.values():
        config.base_model_name_or_path = name
    inner = model.get_base_model()  # what the card's `base_model` and its `base_model:adapter:` tag read
    inner.config._name_or_path = inner.name_or_path = name
    # "auto" would ask the hub whether the base's vocabulary changed: tuneoff never resizes it, and never
    # reaches for a hub
    model.save_pretrained(output_dir, safe_serialization=True, save_embedding_layers=False)


def merge(adapter_dir: Path, out_dir: Path, dtype: str = "float32") -> Path:
    """Write base + LoRA adapter as one standalone HF model directory (weights, config, tokenizer).

    Args:
        adapter_dir: An adapter directory written by `tuneoff finetune` (method lora).
        out_dir: Where the merged model goes; must not exist yet (or be empty).
        dtype: Precision of the merged weights: float32, bfloat16 or auto (int8 is an evaluation precision:
            the merged model is quantised when it is loaded with `dtype: int8`, not stored so).
    """
    from ..models import ModelSpec, adapter_base, canonical_dtype, load_model
    from ..models.local import resolve_precision

    if canonical_dtype(dtype) == "int8":
        raise TuneoffError("int8 is an evaluation precision; merged weights are stored in float32 or bfloat16",
                           field="dtype", hint="merge in float32 and load the result with --dtype int8")
    if resolve_precision(dtype, "cpu") == "int8":  # `auto` on a CPU where it evaluates in int8: store fp32
        dtype = "float32"

    adapter_dir, out_dir = Path(adapter_dir).expanduser(), Path(out_dir).expanduser()
    if not (adapter_dir / "adapter_config.json").exists():
        raise TuneoffError(f"not an adapter directory (no adapter_config.json): {adapter_dir}", field="adapter",
                           hint="full and freeze fine-tunes are standalone already; merge is for LoRA outputs")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise TuneoffError(f"output directory is not empty: {out_dir}", field="out", hint="choose a new directory")
    model, tokenizer, _ = load_model(ModelSpec(str(adapter_dir), dtype=dtype, device="cpu"))  # merged on load
    tmp = out_dir.parent / f".tmp-{out_dir.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    meta_in = read_model_meta(adapter_dir)
    write_model(model, tokenizer, tmp, {**meta_in, "base": adapter_base(adapter_dir), "merged_from": str(adapter_dir),
                                        "method": "lora+merge"})
    if out_dir.exists():
        out_dir.rmdir()
    os.rename(tmp, out_dir)  # the merged model appears whole or not at all
    return out_dir

