"""Fine-tuning arms: one training path; full, layer-freeze and LoRA are options of it.

    from tuneoff.finetune import FinetuneArm, run_finetune, merge
    result = run_finetune(task, FinetuneArm(method="lora"), "embedded:smollm2-135m-instruct",
                          Path("out/lora"), store)
    # result.output_dir is a model spec like any other: tuneoff.models.load_model(ModelSpec(str(...)))

Rooms: `spec` (the arm as data), `collate` (examples -> tokens, labels, batches), `methods` (what
trains: the only place methods differ), `loop` (the training loop), `checkpoint` (atomic, resumable),
`record` (progress, store, stats), `outputs` (model directories, merge), `run` (the entry point).
"""

from .collate import IGNORE, default_formatter, encode_example
from .loop import NonFiniteLoss, StepReport
from .outputs import merge
from .record import TrainStats
from .run import FinetuneResult, run_finetune
from .spec import FinetuneArm, FreezeOptions, LoraOptions

__all__ = ["FinetuneArm", "LoraOptions", "FreezeOptions", "run_finetune", "FinetuneResult", "TrainStats",
           "merge", "NonFiniteLoss", "StepReport", "default_formatter", "encode_example", "IGNORE"]
