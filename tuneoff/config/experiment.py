"""An experiment as data: a task, a model, arms, and comparison settings, read from YAML.

Errors name the file, the line and the dotted field (`arms[2].prompt.shots`): the YAML is
composed into nodes first so every value keeps its position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TuneoffError, did_you_mean
from ..models.options import DEFAULT_MODEL, canonical_dtype, check_engine
from .prices import Constraints, PriceTable
from .specs import from_dict, located, read_yaml
from .task import TaskData, TaskSpec, load_task

SUPPORTED_VERSIONS = (1,)


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

    def __post_init__(self):
        if not re.fullmatch(r"[\w.+\-]+", self.name):
            raise TuneoffError(f"'{self.name}' must be letters, digits, and . + - _", field="name")
        if self.finetune is not None and self.finetuned:
            raise TuneoffError("a fine-tune arm trains from the base model; `finetuned` is for prompt arms",
                               field="finetuned")

    @property
    def kind(self) -> str:
        return "finetune" if self.finetune is not None else ("combined" if self.finetuned else "prompt")


@dataclass
class CurveSpec:
    """Learning curves: metric vs k demos and vs n training examples."""

    shots: list[int] = field(default_factory=list)
    """k values for the few-shot curve (of `prompt_arm`)."""
    n_train: list[int] = field(default_factory=list)
    """n values for the fine-tuning curve (of `finetune_arm`)."""
    prompt_arm: str | None = None
    """Prompt arm whose `shots` varies; default: the first prompt arm with shots > 0."""
    finetune_arm: str | None = None
    """Fine-tune arm whose `n_train` varies; default: the first fine-tune arm."""

    def __post_init__(self):
        for name in ("shots", "n_train"):
            values = getattr(self, name)
            if any(v < (0 if name == "shots" else 1) for v in values):
                raise TuneoffError("values must be >= 0 (shots) / >= 1 (n_train)", field=f"curves.{name}")


@dataclass
class ConsistencySpec:
    """Control and consistency: the same arm under instruction paraphrases and sampling seeds."""

    arms: list[str] = field(default_factory=list)
    """Arms to probe (prompt or combined arms); default: every prompt arm in score mode is skipped
    unless listed, since scoring is deterministic."""
    paraphrases: list[str] = field(default_factory=list)
    """Alternative instructions."""
    seeds: list[int] = field(default_factory=list)
    """Sampling seeds (sampling at `temperature`)."""
    temperature: float = 0.7
    n_items: int | None = None
    """Test items to use (a prefix of the test split); default all."""


@dataclass
class FlexibilitySpec:
    """Score each fine-tuned model on a second, unrelated task and report the drop vs the base model."""

    task: TaskSpec
    prompt: dict = field(default_factory=dict)
    """How the second task is prompted (default zero-shot in score mode when it has labels)."""


@dataclass
class Experiment:
    """A whole comparison, as written in an experiment YAML file."""

    name: str
    task: TaskSpec
    arms: list[ArmEntry]
    version: int = 1
    """Schema version of the file."""
    model: str = DEFAULT_MODEL
    dtype: str = "float32"
    """float32, bfloat16 or auto, for every arm's evaluation."""
    engine: str = "transformers"
    """Generation engine of the base model's generated arms: `transformers` (batched, measured faster
    for evaluation) or `llamacpp` (GGUF models only; see `tuneoff.models.llamacpp`). Scoring and
    fine-tuned models always run in transformers."""
    batch_size: int = 16
    curves: CurveSpec | None = None
    consistency: ConsistencySpec | None = None
    flexibility: FlexibilitySpec | None = None
    prices: PriceTable = field(default_factory=PriceTable)
    constraints: Constraints = field(default_factory=Constraints)
    output: str = "tuneoff-runs/{name}"
    """Where models and the report go, relative to the experiment file."""
    base_dir: str = field(default=".", repr=False)

    def __post_init__(self):
        if self.version not in SUPPORTED_VERSIONS:
            raise TuneoffError(f"unsupported version {self.version}", field="version",
                               hint=f"this tuneoff reads versions {SUPPORTED_VERSIONS}")
        if not self.arms:
            raise TuneoffError("an experiment needs at least one arm", field="arms")
        canonical_dtype(self.dtype)  # the named-field error for an unknown dtype, same aliases as everywhere
        check_engine(self.engine, allowed=("transformers", "llamacpp"))
        names = [a.name for a in self.arms]
        for i, arm in enumerate(self.arms):
            if names.count(arm.name) > 1:
                raise TuneoffError(f"duplicate arm name '{arm.name}'", field=f"arms[{i}].name")
            if arm.finetuned and self.arm(arm.finetuned) is None or (arm.finetuned and self.arm(arm.finetuned).kind != "finetune"):
                raise TuneoffError(f"'{arm.finetuned}' is not a fine-tune arm of this experiment", field=f"arms[{i}].finetuned",
                                   hint="fine-tune arms: " + ", ".join(a.name for a in self.arms if a.kind == "finetune"))
        for i, arm in enumerate(self.arms):
            _check_arm_model(arm, i)
            _check_teacher(self, arm, i)
        self.task.base_dir = self.base_dir
        if self.flexibility:
            self.flexibility.task.base_dir = self.base_dir

    def prices_of(self, entry: ArmEntry) -> PriceTable:
        """The prices an arm's cost rows use: its own, else (a combined arm) its fine-tune's, else the experiment's."""
        if entry.prices is not None:
            return entry.prices
        tuned = self.arm(entry.finetuned) if entry.finetuned else None
        return tuned.prices if tuned is not None and tuned.prices is not None else self.prices

    def arm(self, name: str) -> ArmEntry | None:
        return next((a for a in self.arms if a.name == name), None)

    def output_dir(self) -> Path:
        out = Path(self.output.format(name=self.name))
        return out if out.is_absolute() else Path(self.base_dir) / out


def _check_teacher(exp: Experiment, arm: ArmEntry, i: int) -> None:
    """A distilled arm's teacher is another arm of the experiment, not itself a distilled one."""
    teacher = (arm.finetune or {}).get("teacher")
    if teacher is None:
        return
    where = f"arms[{i}].finetune.teacher"
    found = exp.arm(teacher) if isinstance(teacher, str) else None
    if found is None or found is arm:
        raise TuneoffError(f"'{teacher}' is not another arm of this experiment", field=where,
                           hint=did_you_mean(str(teacher), [a.name for a in exp.arms if a is not arm]))
    if (found.finetune or {}).get("teacher"):
        raise TuneoffError(f"'{teacher}' is itself distilled: a teacher must be a prompt or plain fine-tune arm",
                           field=where)


def _check_arm_model(arm: ArmEntry, i: int) -> None:
    """A served model can be prompted, not trained: training needs the weights here."""
    from ..models.registry import LOCAL, kind_of

    if arm.model and arm.kind != "prompt" and kind_of(arm.model) != LOCAL:
        raise TuneoffError(f"'{arm.model}' is served over HTTP: a {arm.kind} arm needs local weights",
                           field=f"arms[{i}].model", hint="give it a local model (embedded:NAME or a directory)")


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment file; errors carry its file, line and field."""
    data, root = read_yaml(path, "an experiment: a mapping of name, task, arms, ...")
    with located(path, root):
        exp = from_dict(Experiment, {**data, "base_dir": str(Path(path).parent)}, "", str(path))
        check_arm_options(exp)
    return exp


def check_arm_options(exp: Experiment) -> None:
    """Build every arm's PromptArm/FinetuneArm now, so a typo fails before any model call."""
    for i, entry in enumerate(exp.arms):
        build_prompt_arm(entry, exp.task, where=f"arms[{i}].prompt")
        if entry.finetune is not None:
            build_finetune_arm(entry, where=f"arms[{i}].finetune")


def build_prompt_arm(entry: ArmEntry, task: TaskSpec, where: str = "prompt", overrides: dict | None = None):
    """The PromptArm an entry stands for on `task` (how a fine-tune arm is prompted, for those)."""
    from ..prompting.arm import PromptArm

    options = {"name": entry.name, **(entry.prompt or {}), **(overrides or {})}
    if "mode" not in options and task.labels is not None and not options.get("chain_of_thought"):
        options["mode"] = "score"  # label tasks: constrained scoring unless the arm asks to generate
    return from_dict(PromptArm, options, where)


def build_finetune_arm(entry: ArmEntry, where: str = "finetune", overrides: dict | None = None):
    from ..finetune.spec import FinetuneArm

    return from_dict(FinetuneArm, {"name": entry.name, **(entry.finetune or {}), **(overrides or {})}, where)


def load_task_data(task: TaskData | TaskSpec | str | Path) -> TaskData:
    """A loaded task from TaskData, a TaskSpec, a task YAML file, or an experiment file (its `task`)."""
    from .specs import load_spec

    if isinstance(task, TaskData):
        return task
    if isinstance(task, TaskSpec):
        return load_task(task)
    path = Path(task)
    data, _ = read_yaml(path)
    if "arms" in data:
        return load_task(load_experiment(path).task)
    return load_task(load_spec(TaskSpec, path, base_dir=str(path.parent)))
