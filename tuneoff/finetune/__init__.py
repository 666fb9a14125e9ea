"""Fine-tuning arms: one training path; full, layer-freeze and LoRA are options of it.

    from tuneoff.finetune import FinetuneArm, run_finetune, merge
    result = run_finetune(task, FinetuneArm(method="lora"), "embedded:smollm2-135m-instruct",
                          Path("out/lora"), store)
    # result.output_dir is a model spec like any other: tuneoff.models.load_model(ModelSpec(str(...)))

Rooms: `spec` (the arm as data), `collate` (examples -> tokens, labels, batches), `methods` (what
trains: the only place methods differ), `loop` (the training loop), `parallel` (the loop on several
processes: accelerate, DDP), `checkpoint` (atomic, resumable),
`record` (progress, store, stats), `outputs` (model directories, merge), `run` (the entry point).
"""

import importlib

from .spec import FinetuneArm, FreezeOptions, LoraOptions

# Everything but the spec needs torch: it is imported on first use, so reading an experiment file
# (which builds FinetuneArm to check it) stays light.
_LAZY = {"IGNORE": "collate", "default_formatter": "collate", "encode_example": "collate", "NonFiniteLoss": "loop",
         "StepReport": "loop", "merge": "outputs", "FinetuneResult": "run", "run_finetune": "run",
         "TrainStats": "record"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["FinetuneArm", "LoraOptions", "FreezeOptions", "run_finetune", "FinetuneResult", "TrainStats",
           "merge", "NonFiniteLoss", "StepReport", "default_formatter", "encode_example", "IGNORE"]
