"""`FinetuneArm`: one fine-tuning arm as data. Full, layer-freeze and LoRA are values of `method`.

Defaults work out of the box on the embedded SmolLM2-135M: LoRA r=16/alpha=32 at lr 2e-4,
full/freeze at 5e-5, two epochs, batch 8, 256 tokens.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from ..errors import TuneoffError
from ..models.options import canonical_dtype, check_attention, check_device

Method = Literal["full", "freeze", "lora"]

DEFAULT_LR = {"lora": 2e-4, "full": 5e-5, "freeze": 5e-5}
"""Learning rate per method when the arm gives none: adapters start at zero and tolerate a larger step."""

RUNTIME_OPTIONS = ("device", "attn_implementation", "compile")
"""Options that say where and with which kernels the same arithmetic runs, not what is trained: they stay
out of every identity of a run (checkpoint fingerprint, output folder), so a run started on one device
resumes on another and a finished model is reused whichever kernels would have trained it."""


@dataclass
class LoraOptions:
    """Low-rank adapters (peft) on the model's linear projections; the base weights stay frozen."""

    r: int = 16
    """Rank of each adapter pair (A: r x in, B: out x r)."""
    alpha: float = 32.0
    """Scale: the adapter's output is multiplied by alpha / r."""
    dropout: float = 0.05
    """Dropout on the adapter input during training."""
    target_modules: list[str] | str = "all-linear"
    """Module names to adapt (e.g. [q_proj, v_proj]); `all-linear`: every linear projection but the LM head."""

    def __post_init__(self):
        if self.r < 1:
            raise TuneoffError("must be >= 1", field="lora.r")
        if self.alpha <= 0:
            raise TuneoffError("must be > 0", field="lora.alpha")
        if not 0 <= self.dropout < 1:
            raise TuneoffError("must be in [0, 1)", field="lora.dropout")
        if not self.target_modules:
            raise TuneoffError("needs at least one module name, or `all-linear`", field="lora.target_modules")


@dataclass
class FreezeOptions:
    """Layer freezing: embeddings and early blocks frozen, the last blocks trained."""

    train_last_n: int = 4
    """How many of the last transformer blocks are trained (SmolLM2-135M has 30)."""
    train_head: bool = False
    """Also train the final norm and the LM head. On a model with tied embeddings the head is first
    untied (given its own copy of the embedding matrix) so the input embeddings stay frozen; the saved
    model then stores both matrices (`tie_word_embeddings: false`)."""

    def __post_init__(self):
        if self.train_last_n < 0:
            raise TuneoffError("must be >= 0", field="freeze.train_last_n")


@dataclass
class FinetuneArm:
    """One fine-tuning arm: method, optimisation, data budget, checkpointing."""

    name: str = "finetune"
    """Short name used in the store and the report."""
    method: Method = "lora"
    """`lora` (adapters only), `freeze` (last blocks only) or `full` (all weights)."""
    lora: LoraOptions = field(default_factory=LoraOptions)
    """Adapter options; used when method is `lora`."""
    freeze: FreezeOptions = field(default_factory=FreezeOptions)
    """Which layers train; used when method is `freeze`."""
    epochs: int = 2
    """Passes over the training examples (`max_steps` may stop earlier). Two: LoRA on 256 SST-2
    examples scored 88.5% after two epochs at 2e-4, against 82.5% after one at 1e-3 and 85.0% for one
    epoch over 512 examples (zero-shot 78.5%; a held-out 200-item slice of SST-2 test)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (None: run all epochs)."""
    learning_rate: float | None = None
    """Peak learning rate; None: 2e-4 for lora, 5e-5 for full and freeze."""
    lr_schedule: Literal["linear", "cosine", "constant"] = "linear"
    """Decay after warmup: to zero linearly, by cosine, or none."""
    warmup_ratio: float = 0.05
    """Fraction of the optimizer steps spent warming up linearly from zero."""
    warmup_steps: int | None = None
    """Warmup length in steps; overrides `warmup_ratio` when set."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay, on matrices only (never norms or biases)."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this (0: no clipping)."""
    batch_size: int = 8
    """Examples per forward pass."""
    group_by_length: bool = True
    """Batch examples of similar length together (less compute spent on padding); order stays seeded."""
    grad_accum: int = 1
    """Forward passes per optimizer step (effective batch = batch_size x grad_accum)."""
    max_length: int | None = None
    """Most tokens per example, prompt and completion together. None: from the data, the longest training
    example, up to the model's context and at most 2048 (a fixed 256 cut the start of ~45% of DialogSum's
    dialogues); the share truncated is reported either way."""
    truncation: Literal["left", "right"] = "left"
    """Where a too-long example loses tokens. `left`: the prompt's oldest tokens, so the completion
    survives (a completion longer than max_length - 1 is then cut at its end). `right`: the end of the
    sequence, as most trainers do; an example whose completion is cut away entirely is dropped."""
    completion_only: bool = True
    """Loss on completion tokens only (prompt tokens and padding get label -100)."""
    dtype: str = "float32"
    """Compute precision, any name of `tuneoff.models.options.DTYPES` but int8 (kept canonical): `bfloat16` (`bf16`)
    autocasts matmuls while master weights and optimizer stay fp32; `auto`: bfloat16 where the hardware
    does it natively (AVX512_BF16/AMX CPUs, bf16 GPUs), else float32."""
    device: str = "auto"
    """Where training runs: `auto` (CUDA when present, else CPU), `cpu`, `cuda` or `cuda:N`. Under several
    processes (`tuneoff finetune --num-processes N`, `accelerate launch`) each process takes the device
    accelerate gives it, and this option only says whether that is the CPU (`cpu`) or not."""
    attn_implementation: str = "auto"
    """Attention kernel while training: `auto` (transformers' default, SDPA), `sdpa`, `eager`, or
    `flash_attention_2` (CUDA with the flash-attn package; without them, SDPA and a warning)."""
    compile: bool = False
    """`torch.compile` the decoder (in place: parameter names and checkpoints stay as they are). Pays a
    compilation at the first steps (and at each new batch shape until shapes are marked dynamic) for
    faster steps after; worth it on a GPU over many steps, rarely on a short CPU run."""
    n_train: int | None = None
    """Seeded, stratified subsample of the training split (None: all of it)."""
    seed: int = 0
    """Seed for the subsample, adapter init, data order and dropout."""
    eval_steps: int | None = None
    """Compute loss on the dev split every N optimizer steps (None: no periodic eval)."""
    n_eval: int = 200
    """Dev examples used for the eval loss (seeded subsample)."""
    early_stopping_patience: int | None = None
    """Stop after this many evals without a better dev loss; the output then holds the best weights."""
    save_steps: int = 50
    """Write a resumable checkpoint every N optimizer steps (and at the end)."""
    save_total_limit: int = 2
    """Keep only the last K checkpoints."""
    keep_checkpoints: bool = False
    """Keep `checkpoints/` after a successful run (they hold optimizer state: ~3x the trained weights)."""
    teacher: str | None = None
    """Distillation: an arm of the same experiment whose answers to training inputs (their labels unseen)
    are the training targets. The experiment runs the teacher; this room only trains on what it gets."""
    n_unlabelled: int | None = None
    """Distillation: how many training inputs the teacher answers (default: the whole training split)."""

    def bf16(self, device: str = "cpu") -> bool:
        """Whether this arm's matmuls run in bf16 on `device`."""
        if self.dtype == "auto":
            from ..models.local import resolve_precision
            return resolve_precision("auto", device) == "bfloat16"
        return self.dtype == "bfloat16"

    def __post_init__(self):
        # the same names and aliases as the model spec and the experiment: `bf16` works everywhere
        self.dtype = canonical_dtype(self.dtype, field="dtype")
        check_device(self.device)
        check_attention(self.attn_implementation)
        if self.dtype == "int8":
            raise TuneoffError("int8 is an evaluation precision: training updates float weights", field="dtype",
                               hint="train in float32 or auto; the experiment's `dtype: int8` evaluates the result")
        self._check_positive()
        if self.max_steps is not None and self.max_steps < 1:
            raise TuneoffError("must be >= 1", field="max_steps")
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise TuneoffError("must be > 0", field="learning_rate")
        if not 0 <= self.warmup_ratio < 1:
            raise TuneoffError("must be in [0, 1)", field="warmup_ratio")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise TuneoffError("must be >= 0", field="warmup_steps")
        if self.early_stopping_patience is not None and self.eval_steps is None:
            raise TuneoffError("early stopping needs a periodic eval loss", field="early_stopping_patience",
                               hint="set eval_steps too (e.g. eval_steps: 20)")
        if self.method == "freeze" and self.freeze.train_last_n == 0 and not self.freeze.train_head:
            raise TuneoffError("freezes every layer: nothing would train", field="freeze.train_last_n",
                               hint="train at least one block, or set freeze.train_head: true")
        if self.n_unlabelled is not None and (self.teacher is None or self.n_unlabelled < 1):
            raise TuneoffError("must be >= 1, with a `teacher` arm" if self.teacher else "needs a `teacher` arm",
                               field="n_unlabelled", hint="finetune: {teacher: ARM, n_unlabelled: N}")
        if self.max_length is not None and self.max_length < 2:
            raise TuneoffError("must be >= 2 (a prompt token and a completion token)", field="max_length")

    def _check_positive(self) -> None:
        for name in ("epochs", "batch_size", "grad_accum", "n_eval", "save_steps", "save_total_limit"):
            if getattr(self, name) < 1:
                raise TuneoffError("must be >= 1", field=name)
        for name in ("n_train", "eval_steps", "early_stopping_patience"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise TuneoffError("must be >= 1", field=name)
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            raise TuneoffError("must be >= 0", field="weight_decay" if self.weight_decay < 0 else "max_grad_norm")

    @property
    def lr(self) -> float:
        """The learning rate in force: the arm's own, else the method's default."""
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LR[self.method]

    def to_dict(self) -> dict:
        """Plain form for the store and `tuneoff.json`; only the options of the chosen method."""
        data = dataclasses.asdict(self)
        for other in ("lora", "freeze"):
            if other != self.method:
                data.pop(other)
        data["learning_rate"] = self.lr
        return data
