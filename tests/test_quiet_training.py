# python -m pytest -q tests/test_quiet_training.py
"""Training and loading a LoRA adapter print no library deprecation noise.

peft reads transformers' deprecated `is_gradient_checkpointing` when it wraps a model, which
printed a FutureWarning four times in the middle of `tuneoff demo`'s output. Both places it
happens (`get_peft_model` while training, `PeftModel.from_pretrained` while loading the adapter)
silence exactly that message; this test trains one step of the tiny Llama and loads the result.
"""

from __future__ import annotations

import io
import warnings

from rich.console import Console

from tuneoff.data import Example
from tuneoff.finetune import FinetuneArm, run_finetune
from tuneoff.models import ModelSpec, load_model
from tuneoff.config.specs import from_dict
from tuneoff.store import Store
from tuneoff.config.task import TaskData, TaskSpec


def _one_step_task() -> TaskData:
    train = [Example(input=text, target=label, id=f"q:{i}")
             for i, (text, label) in enumerate([("the movie was great", "positive"), ("a dull film", "negative")])]
    spec = TaskSpec(name="quiet", train="quiet.jsonl", instruction="classify the sentiment")
    return TaskData(spec=spec, train=train, dev=train, test=train, labels=["negative", "positive"])


def test_lora_training_and_adapter_loading_raise_no_gradient_checkpointing_futurewarning(tiny_model_dir, tmp_path):
    arm = from_dict(FinetuneArm, {"name": "q", "method": "lora", "batch_size": 2, "epochs": 1,
                                  "warmup_ratio": 0.0, "max_length": 32})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # a warning already shown once elsewhere must still be seen here
        result = run_finetune(_one_step_task(), arm, str(tiny_model_dir), tmp_path / "lora",
                              Store(tmp_path / "runs.sqlite"), console=Console(file=io.StringIO()))
        load_model(ModelSpec(str(result.output_dir), device="cpu"))
    assert result.stats.steps == 1
    noisy = [w for w in caught if issubclass(w.category, FutureWarning) and "is_gradient_checkpointing" in str(w.message)]
    assert noisy == [], [f"{w.filename}:{w.lineno}: {w.message}" for w in noisy]
