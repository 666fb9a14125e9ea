"""An experiment's arms as data: what kind each is (`ArmKind`), its entry in the YAML (`ArmEntry`), and
its options as dataclasses (`ArmOptions`: the PromptArm and FinetuneArm candidates), built once when
the experiment is read, with errors that name the file, line and field (`arms[2].prompt.shots`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import TuneoffError
from ..records import TextEnum
from .prices import PriceTable
from .specs import from_dict
from .task import TaskSpec
from .tuning import TuningSpec, grid

if TYPE_CHECKING:
    from ..finetune.spec import FinetuneArm
    from ..prompting.arm import PromptArm


class ArmKind(TextEnum):
    """What an arm changes: the prompt, the weights, or both (a prompt arm on a fine-tune arm's model)."""

    PROMPT = "prompt"
    FINETUNE = "finetune"
    COMBINED = "combined"
    """A prompt arm on the model a fine-tune arm of the experiment trained (`finetuned: ARM`)."""

    @property
    def changes_weights(self) -> bool:
        return self is not ArmKind.PROMPT

    @property
    def approach(self) -> str:
        """The approach in words, as the report's arm list names it."""
        return {ArmKind.PROMPT: "prompting", ArmKind.FINETUNE: "fine-tuning", ArmKind.COMBINED: "both"}[self]


@dataclass(frozen=True)
class ArmOptions:
    """An arm's options as dataclasses, parsed once when its experiment is read (errors name the
    file, line and field); later code reads these, never the YAML's dicts."""

    prompt: PromptArm
    """How the arm is prompted, as declared (with the prompt side's search when `tune: true`)."""
    finetune: tuple[FinetuneArm, ...] = ()
    """A fine-tune arm's candidate configurations: one, or the product of the lists tuning searches."""

    @property
    def teacher(self) -> str | None:
        return self.finetune[0].teacher if self.finetune else None

    @property
    def seed(self) -> int:
        """The seed repeats count from: the fine-tune's (a fine-tune arm), else the prompt's."""
        return self.finetune[0].seed if self.finetune else self.prompt.seed


@dataclass
class ArmEntry:
    """One arm: a prompt arm, a fine-tune arm, or a prompt arm on a fine-tuned model (`finetuned`)."""

    name: str
    """Unique within the experiment; the column name in the table."""
    prompt: dict | None = None
    """PromptArm options (see `tuneoff.prompting`); for a fine-tune arm, how it is prompted at
    evaluation (and formatted in training): default zero-shot with the task instruction."""
    finetune: dict | None = None
    """FinetuneArm options (see `tuneoff.finetune`): method, lora, epochs, learning_rate, ..."""
    finetuned: str | None = None
    """Name of a fine-tune arm whose trained model this prompt arm uses (the combined arm)."""
    model: str | None = None
    """Override the experiment's model for this arm: e.g. a served model (`http://HOST/v1?model=NAME`,
    `openai:NAME`) for a prompt arm, next to fine-tune arms on a small local model."""
    prices: PriceTable | None = None
    """This arm's own prices (`mode: api` for a hosted model, `hardware` for self-hosting); default the
    experiment's `prices` (a combined arm: its fine-tune arm's)."""
    repeats: int | None = None
    """Runs of this arm with new seeds (default: the experiment's `repeats`); 1 = no repeat."""
    tune: bool | None = None
    """Search on dev within the experiment's `tuning:` budget before the test split is scored: a
    prompt arm its instruction, demos and calibration (`true` to opt in); a fine-tune arm its
    hyper-parameters (on by default when `tuning:` is present; `false` opts out)."""

    def __post_init__(self):
        if not re.fullmatch(r"[\w.+\-]+", self.name):
            raise TuneoffError(f"'{self.name}' must be letters, digits, and . + - _", field="name")
        if self.repeats is not None and self.repeats < 1:
            raise TuneoffError("must be >= 1", field="repeats")
        if self.finetune is not None and self.finetuned:
            raise TuneoffError("a fine-tune arm trains from the base model; `finetuned` is for prompt arms",
                               field="finetuned")

    @property
    def kind(self) -> ArmKind:
        if self.finetune is not None:
            return ArmKind.FINETUNE
        return ArmKind.COMBINED if self.finetuned else ArmKind.PROMPT

    def repeat_draws(self) -> str:
        """What a repeat of this arm draws anew, in words; empty for a deterministic prompt (scored labels
        or greedy answers on first or similarity-chosen demos: a repeat would replay the call cache)."""
        if self.kind is ArmKind.FINETUNE:
            return "training seed (data order, adapter initialisation, subsample)"
        p, draws = self.prompt or {}, []
        if int(p.get("shots") or 0) and p.get("demo_selection", "first") in ("random", "stratified"):
            draws.append("demo draw")
        if p.get("mode", "generate") != "score" and float(p.get("temperature") or 0) > 0:
            draws.append("sampled answers")
        return " and ".join(draws)

    _options = None  # (not a field: the YAML's form is what is stored) set by `parse`

    @property
    def options(self) -> ArmOptions:
        """The arm's options as dataclasses (parsed by its experiment)."""
        if self._options is None:  # an entry outside an experiment: our bug
            raise RuntimeError(f"arm {self.name!r} was not parsed by an experiment")
        return self._options

    def parse(self, task: TaskSpec, tuning: TuningSpec | None, i: int) -> None:
        """Build the arm's PromptArm and FinetuneArm candidates once; errors name `arms[i].prompt.FIELD`."""
        prompt = build_prompt_arm(self, task, where=f"arms[{i}].prompt", tuning=tuning)
        candidates = grid(self.finetune) if self.finetune is not None else []
        self._options = ArmOptions(prompt, tuple(build_finetune_arm(self, where=f"arms[{i}].finetune", overrides=o)
                                                 for o in candidates))

    @property
    def teacher(self) -> str | None:
        """The arm whose answers a distilled fine-tune arm trains on (`finetune.teacher`)."""
        return self.options.teacher


def build_prompt_arm(entry: ArmEntry, task: TaskSpec, where: str = "prompt", overrides: dict | None = None,
                     tuning: TuningSpec | None = None):
    """The PromptArm an entry stands for on `task` (how a fine-tune arm is prompted, for those);
    with `tuning`, a `tune: true` arm gets the prompt side's search as its `optimise`."""
    from ..prompting.arm import PromptArm

    options = {"name": entry.name, **(entry.prompt or {}), **(overrides or {})}
    if entry.tune and tuning is not None and entry.finetune is None:
        options.setdefault("optimise", tuning.prompt.optimise_options())
    if "mode" not in options and task.labels is not None and not options.get("chain_of_thought"):
        options["mode"] = "score"  # label tasks: constrained scoring unless the arm asks to generate
    return from_dict(PromptArm, options, where)


def build_finetune_arm(entry: ArmEntry, where: str = "finetune", overrides: dict | None = None):
    from ..finetune.spec import FinetuneArm

    return from_dict(FinetuneArm, {"name": entry.name, **(entry.finetune or {}), **(overrides or {})}, where)
